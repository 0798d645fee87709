// The exported page: renders the same views as `clio serve` from the JSON block
// embedded in the file. Routes live in the URL hash (#/, #/cluster/<id>, #/changes,
// #/map, #/search), each with ?run=<run_id>. Mirrors build_forest and search_clusters
// of clio/web/model.py; the What changed sections come computed by its change_groups.
// Text is always set with textContent, never parsed as HTML.
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("clio-data").textContent);
  var app = document.getElementById("app");
  var SVG_NS = "http://www.w3.org/2000/svg";
  var SORT_LABELS = { users: "Distinct users", conversations: "Conversations", concern: "Concern", name: "Name" };

  // -- tiny DOM helpers -------------------------------------------------------------

  function append(node, children) {
    (Array.isArray(children) ? children : [children]).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      if (Array.isArray(child)) { append(node, child); return; }
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "class") node.className = value;
      else if (key === "open" || key === "selected") node[key] = Boolean(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    });
    return append(node, children);
  }

  function s(tag, attrs, children) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (attrs[key] !== null && attrs[key] !== undefined) node.setAttribute(key, String(attrs[key]));
    });
    return append(node, children);
  }

  // -- formats (as the server's Jinja filters) ---------------------------------------

  function count(n) { return n === null || n === undefined ? "–" : n.toLocaleString("en-US"); }
  function pct(v) {
    if (v === null || v === undefined) return "–";
    var p = v * 100;
    return p > 0 && p < 0.1 ? "<0.1%" : p.toFixed(1) + "%";
  }
  // As Python's "%+d" and "%+.2f".
  function signed(n, digits) {
    var text = digits === undefined ? String(n) : n.toFixed(digits);
    return text.charAt(0) === "-" ? text : "+" + text;
  }
  function concernLevel(mean) {
    if (mean === null || mean === undefined || isNaN(mean)) return null;
    return Math.min(5, Math.max(1, Math.floor(mean + 0.5)));
  }
  function concernText(mean) {
    var level = concernLevel(mean);
    return level === null ? "not scored" : mean.toFixed(1) + " · " + DATA.concern_labels[level];
  }
  function concernBadge(mean) {
    var level = concernLevel(mean);
    return h("span", { class: "concern concern-" + (level || "none"),
      title: "Mean concern score (1 = minimal, 5 = severe)" }, concernText(mean));
  }
  function barWidth(value, top) {
    if (!value || !top) return 0;
    return Math.round(Math.min(1, value / top) * 10000) / 100;
  }
  function shareBar(value, top, label) {
    return h("span", { class: "share" }, [
      s("svg", { class: "bar", viewBox: "0 0 100 8", preserveAspectRatio: "none", "aria-hidden": "true" }, [
        s("rect", { class: "bar-track", width: 100, height: 8, rx: 2 }),
        s("rect", { class: "bar-fill", width: barWidth(value, top), height: 8, rx: 2 }),
      ]),
      h("span", { class: "share-text" }, label),
    ]);
  }

  // -- routing ------------------------------------------------------------------------

  function parseHash() {
    var hash = location.hash.replace(/^#/, "") || "/";
    var q = hash.indexOf("?");
    var path = q >= 0 ? hash.slice(0, q) : hash;
    var params = {};
    new URLSearchParams(q >= 0 ? hash.slice(q + 1) : "").forEach(function (v, k) { params[k] = v; });
    return { path: path, params: params };
  }

  function href(path, params) {
    var query = new URLSearchParams();
    Object.keys(params || {}).forEach(function (k) {
      if (params[k] !== null && params[k] !== undefined && params[k] !== "") query.set(k, params[k]);
    });
    var text = query.toString();
    return "#" + path + (text ? "?" + text : "");
  }

  function clusterHref(id, runId) { return href("/cluster/" + encodeURIComponent(id), { run: runId }); }

  function findRun(runId) {
    if (!runId) return DATA.runs[0] || null;
    for (var i = 0; i < DATA.runs.length; i++) if (DATA.runs[i].run_id === runId) return DATA.runs[i];
    return null;
  }

  // -- shared data helpers (mirror clio/web/model.py) ----------------------------------

  function sortClusters(list, key) {
    var copy = list.slice();
    var byId = function (a, b) { return a.id < b.id ? -1 : a.id > b.id ? 1 : 0; };
    copy.sort(function (a, b) {
      if (key === "name") {
        var an = a.name.toLowerCase(), bn = b.name.toLowerCase();
        return an < bn ? -1 : an > bn ? 1 : byId(a, b);
      }
      if (key === "conversations") {
        return (b.n_conversations - a.n_conversations) || (b.n_users - a.n_users) || byId(a, b);
      }
      if (key === "concern") {
        var an2 = a.concern_mean === null, bn2 = b.concern_mean === null;
        if (an2 !== bn2) return an2 ? 1 : -1;
        return ((b.concern_mean || 0) - (a.concern_mean || 0)) || (b.n_users - a.n_users) || byId(a, b);
      }
      return (b.n_users - a.n_users) || (b.n_conversations - a.n_conversations) || byId(a, b);
    });
    return copy;
  }

  function accepts(filter, c) {
    if (c.n_users < filter.minUsers) return false;
    if (filter.minConcern === null) return true;
    return c.concern_mean !== null && c.concern_mean >= filter.minConcern;
  }

  function buildForest(clusters, filter) {
    var ids = {}, byParent = {};
    clusters.forEach(function (c) { ids[c.id] = true; });
    clusters.forEach(function (c) {
      var parent = c.parent_id && ids[c.parent_id] ? c.parent_id : "";
      (byParent[parent] = byParent[parent] || []).push(c);
    });
    function grow(c, depth) {
      var children = sortClusters(byParent[c.id] || [], filter.sort)
        .map(function (child) { return grow(child, depth + 1); })
        .filter(Boolean);
      var matches = accepts(filter, c);
      if (!matches && !children.length) return null;
      return { cluster: c, depth: depth, matches: matches, children: children };
    }
    var forest = {};
    sortClusters(byParent[""] || [], filter.sort).forEach(function (root) {
      var node = grow(root, 0);
      if (node) (forest[root.facet] = forest[root.facet] || []).push(node);
    });
    return forest;
  }

  function ancestors(cluster, byId) {
    var chain = [], seen = {}, parentId = cluster.parent_id;
    seen[cluster.id] = true;
    while (parentId && byId[parentId] && !seen[parentId]) {
      seen[parentId] = true;
      chain.unshift(byId[parentId]);
      parentId = byId[parentId].parent_id;
    }
    return chain;
  }

  function searchClusters(clusters, query) {
    var words = query.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) return [];
    var ranked = [];
    clusters.forEach(function (c) {
      var name = c.name.toLowerCase(), keywords = c.keywords.join(" ").toLowerCase();
      var hay = [name, keywords, c.description.toLowerCase()].join(" ");
      if (!words.every(function (w) { return hay.indexOf(w) >= 0; })) return;
      var rank = words.every(function (w) { return name.indexOf(w) >= 0; }) ? 0
        : words.every(function (w) { return name.indexOf(w) >= 0 || keywords.indexOf(w) >= 0; }) ? 1 : 2;
      ranked.push({ rank: rank, c: c });
    });
    ranked.sort(function (a, b) {
      return (a.rank - b.rank) || (b.c.n_users - a.c.n_users) || (a.c.id < b.c.id ? -1 : a.c.id > b.c.id ? 1 : 0);
    });
    return ranked.map(function (r) { return r.c; });
  }

  // -- views --------------------------------------------------------------------------

  function clusterCells(c, top) {
    return [
      h("span", { class: "cell num" }, count(c.n_users)),
      h("span", { class: "cell num" }, count(c.n_conversations)),
      h("span", { class: "cell" }, shareBar(c.share, top, pct(c.share))),
      h("span", { class: "cell" }, concernBadge(c.concern_mean)),
    ];
  }

  function treeNode(node, run, top, openAll) {
    var c = node.cluster;
    var rowClass = "row depth-" + Math.min(node.depth, 6) + (node.matches ? "" : " dim");
    var link = h("a", { href: clusterHref(c.id, run.run_id) }, c.name);
    if (node.children.length) {
      return h("details", { class: "node", "data-cluster-id": c.id, open: openAll }, [
        h("summary", { class: rowClass }, [
          h("span", { class: "cell name" }, [h("span", { class: "twisty", "aria-hidden": "true" }), link,
            h("span", { class: "count-tag", title: "Child clusters" }, node.children.length)]),
          clusterCells(c, top),
        ]),
        h("div", { class: "children", role: "group" },
          node.children.map(function (child) { return treeNode(child, run, top, openAll); })),
      ]);
    }
    return h("div", { class: "node leaf", "data-cluster-id": c.id }, h("div", { class: rowClass }, [
      h("span", { class: "cell name" }, [h("span", { class: "twisty-leaf", "aria-hidden": "true" }), link]),
      clusterCells(c, top),
    ]));
  }

  function stat(label, value, extra) {
    return h("div", {}, [h("dt", {}, label), h("dd", extra || {}, value)]);
  }

  function viewTree(run, params) {
    var clusters = DATA.clusters[run.run_id] || [];
    var filter = {
      sort: SORT_LABELS[params.sort] ? params.sort : "users",
      minUsers: parseInt(params.min_users, 10) > 0 ? parseInt(params.min_users, 10) : 0,
      minConcern: parseFloat(params.min_concern) >= 1 ? parseFloat(params.min_concern) : null,
    };
    var active = filter.minUsers > 0 || filter.minConcern !== null;
    var forest = buildForest(clusters, filter);
    var concerning = sortClusters(clusters.filter(function (c) {
      return c.concern_mean !== null && c.concern_mean >= DATA.concerning_at;
    }), "concern");

    var sortSelect = h("select", { name: "sort" }, Object.keys(SORT_LABELS).map(function (k) {
      return h("option", { value: k, selected: k === filter.sort }, SORT_LABELS[k]);
    }));
    var usersInput = h("input", { type: "number", name: "min_users", min: 0, step: 1, placeholder: "any",
      value: filter.minUsers || "" });
    var concernSelect = h("select", { name: "min_concern" }, [h("option", { value: "" }, "any")].concat(
      [2, 3, 4, 5].map(function (l) {
        return h("option", { value: l, selected: filter.minConcern === l }, l + "+ (" + DATA.concern_labels[l] + ")");
      })));
    var form = h("form", { class: "toolbar card", id: "tree-filters" }, [
      h("label", {}, ["Sort by", sortSelect]),
      h("label", {}, ["Min. users", usersInput]),
      h("label", {}, ["Min. concern", concernSelect]),
      h("button", { type: "submit", class: "button" }, "Apply"),
      active || filter.sort !== "users" ? h("a", { class: "button ghost", href: href("/", { run: run.run_id }) }, "Reset") : null,
      h("span", { class: "spacer" }),
      h("button", { type: "button", class: "button ghost", "data-tree": "expand" }, "Expand all"),
      h("button", { type: "button", class: "button ghost", "data-tree": "collapse" }, "Collapse all"),
    ]);
    function applyFilters(event) {
      if (event) event.preventDefault();
      location.hash = href("/", { run: run.run_id, sort: sortSelect.value === "users" ? "" : sortSelect.value,
        min_users: usersInput.value, min_concern: concernSelect.value });
    }
    form.addEventListener("submit", applyFilters);
    sortSelect.addEventListener("change", applyFilters);
    concernSelect.addEventListener("change", applyFilters);
    form.querySelectorAll("[data-tree]").forEach(function (button) {
      button.addEventListener("click", function () {
        var open = button.getAttribute("data-tree") === "expand";
        app.querySelectorAll(".tree details").forEach(function (node) { node.open = open; });
      });
    });

    var sections = Object.keys(forest).sort().map(function (facet) {
      var roots = forest[facet];
      // Bars are relative to the facet's largest top cluster, filtered or not.
      var top = Math.max.apply(null, clusters.filter(function (c) { return c.facet === facet && !c.parent_id; })
        .map(function (c) { return c.share; }).concat([0]));
      var size = clusters.filter(function (c) { return c.facet === facet; }).length;
      return h("section", { class: "card facet", id: "facet-" + facet }, [
        h("header", { class: "facet-head" }, [
          h("h2", {}, [h("span", { class: "facet-label" }, "Facet"), " " + facet]),
          h("span", { class: "muted" }, size + " clusters · " + roots.length + " at the top"),
        ]),
        h("div", { class: "tree", "data-facet": facet }, [
          h("div", { class: "row row-head", "aria-hidden": "true" }, [
            h("span", { class: "cell name" }, "Cluster"), h("span", { class: "cell num" }, "Users"),
            h("span", { class: "cell num" }, "Conversations"), h("span", { class: "cell" }, "Share"),
            h("span", { class: "cell" }, "Concern"),
          ]),
          roots.map(function (node) { return treeNode(node, run, top, active); }),
        ]),
      ]);
    });
    if (!sections.length) sections = [h("section", { class: "card empty" }, h("p", {}, "No cluster matches these filters."))];

    return [
      h("section", { class: "intro" }, [
        h("div", {}, [
          h("p", { class: "eyebrow" }, "Run " + run.run_id + (run !== DATA.runs[0] ? " · not the latest" : "")),
          h("h1", {}, "Cluster hierarchy"),
          h("p", { class: "lede" }, "What people use the assistant for, grouped into named clusters per facet. " +
            "Open a row to see its sub-clusters, or a name to see its details."),
          h("p", { class: "muted" }, [h("a", { id: "what-changed", href: href("/changes", { run: run.run_id }) },
            "What changed in this run"), ", against the run before it."]),
        ]),
        h("dl", { class: "stats" }, [
          stat("Conversations", count(run.n_conversations)),
          stat("Released clusters", count(clusters.length)),
          stat("Concerning (≥ 3)", count(concerning.length)),
          stat("Finished", run.finished, { class: "small" }),
        ]),
      ]),
      form,
      active ? h("p", { class: "note" }, "Showing clusters that pass the filters; greyed rows are shown only as the path to a match.") : null,
      sections,
      concerning.length ? h("section", { class: "card" }, [
        h("header", { class: "facet-head" }, [h("h2", {}, "Most concerning clusters"),
          h("span", { class: "muted" }, "mean concern score 3 or more")]),
        h("ol", { class: "plain-list" }, concerning.slice(0, 8).map(function (c) {
          return h("li", {}, [h("a", { href: clusterHref(c.id, run.run_id) }, c.name), " ",
            h("span", { class: "muted" }, c.facet + " · level " + c.level + " · " + count(c.n_users) + " users"), " ",
            concernBadge(c.concern_mean)]);
        })),
      ]) : null,
    ];
  }

  function viewCluster(run, id) {
    var clusters = DATA.clusters[run.run_id] || [];
    var byId = {};
    clusters.forEach(function (c) { byId[c.id] = c; });
    var c = byId[id];
    var history = DATA.history[id] || [];
    if (!c) {
      return notFound(history.length
        ? "This cluster was not released in run " + run.run_id + " (it was in: " +
          history.map(function (p) { return p.run_id; }).join(", ") + ")."
        : "There is no released cluster with this id.");
    }
    var children = sortClusters(clusters.filter(function (x) { return x.parent_id === c.id; }), "users");
    var topChild = Math.max.apply(null, children.map(function (x) { return x.share; }).concat([0]));
    var charts = (DATA.charts[run.run_id] || {})[id] || [];
    var maxUsers = Math.max.apply(null, history.map(function (p) { return p.n_users; }).concat([0]));

    var crumbs = h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, [
      h("a", { href: href("/", { run: run.run_id }) }, c.facet),
      ancestors(c, byId).map(function (a) {
        return [h("span", { "aria-hidden": "true" }, "›"), h("a", { href: clusterHref(a.id, run.run_id) }, a.name)];
      }),
      h("span", { "aria-hidden": "true" }, "›"), h("span", { "aria-current": "page" }, c.name),
    ]);
    var head = h("section", { class: "card cluster-head" }, [
      h("div", { class: "title-line" }, [h("h1", { id: "cluster-name" }, c.name), concernBadge(c.concern_mean)]),
      h("p", { class: "muted meta" }, [h("code", {}, c.id),
        " · facet " + c.facet + " · level " + c.level + (c.level === 0 ? " (base cluster)" : "")]),
      c.description ? h("p", { class: "description" }, c.description)
        : h("p", { class: "description muted" }, "No description was released for this cluster."),
      c.keywords.length ? h("ul", { class: "chips", "aria-label": "Keywords" },
        c.keywords.map(function (k) { return h("li", {}, k); })) : null,
      h("dl", { class: "stats" }, [
        stat("Distinct users", count(c.n_users)),
        stat("Conversations", count(c.n_conversations)),
        stat("Share of facet", pct(c.share)),
        stat("Mean concern", c.concern_mean === null ? "–" : c.concern_mean.toFixed(2)),
      ]),
    ]);
    var chartCards = charts.length ? charts.map(function (chart) {
      return h("section", { class: "card chart", "data-facet": chart.facet }, [
        h("h2", {}, chart.title),
        h("table", { class: "bars" }, [
          h("thead", {}, h("tr", {}, [h("th", { scope: "col" }, "Value"), h("th", { scope: "col" }, "Share of conversations"),
            h("th", { scope: "col", class: "num" }, "Users"), h("th", { scope: "col", class: "num" }, "Conv.")])),
          h("tbody", {}, chart.bars.map(function (bar) {
            return h("tr", {}, [h("th", { scope: "row" }, bar.label), h("td", {}, shareBar(bar.fraction, 1, pct(bar.fraction))),
              h("td", { class: "num" }, count(bar.n_users)), h("td", { class: "num" }, count(bar.n_conversations))]);
          })),
        ]),
      ]);
    }) : [h("section", { class: "card chart" }, [h("h2", {}, "Breakdowns"),
      h("p", { class: "muted" }, "No breakdown cell of this cluster passed the release thresholds.")])];

    return [
      crumbs, head,
      h("div", { class: "grid-2" }, chartCards),
      charts.length ? h("p", { class: "note" }, "Values with fewer than " + run.min_users + " users or " +
        run.min_conversations + " conversations are not shown, so bars need not add up to 100%.") : null,
      children.length ? h("section", { class: "card" }, [
        h("header", { class: "facet-head" }, [h("h2", {}, "Sub-clusters"), h("span", { class: "muted" }, children.length + " released")]),
        h("table", { class: "data", id: "children" }, [
          h("thead", {}, h("tr", {}, ["Cluster", "Users", "Conversations", "Share of facet", "Concern"].map(function (t, i) {
            return h("th", { scope: "col", class: i === 1 || i === 2 ? "num" : null }, t);
          }))),
          h("tbody", {}, children.map(function (x) {
            return h("tr", {}, [h("td", {}, h("a", { href: clusterHref(x.id, run.run_id) }, x.name)),
              h("td", { class: "num" }, count(x.n_users)), h("td", { class: "num" }, count(x.n_conversations)),
              h("td", {}, shareBar(x.share, topChild, pct(x.share))), h("td", {}, concernBadge(x.concern_mean))]);
          })),
        ]),
      ]) : null,
      h("section", { class: "card" }, [
        h("header", { class: "facet-head" }, [h("h2", {}, "Across runs"),
          h("span", { class: "muted" }, ["this cluster id in " + history.length + " of " + DATA.runs.length + " runs · ",
            h("a", { id: "what-changed", href: href("/changes", { run: run.run_id }) }, "What changed in this run")])]),
        h("table", { class: "data", id: "history" }, [
          h("thead", {}, h("tr", {}, ["Run", "Finished", "Name in that run", "Distinct users", "Conversations", "Share", "Concern"]
            .map(function (t, i) { return h("th", { scope: "col", class: i === 4 || i === 5 ? "num" : null }, t); }))),
          h("tbody", {}, history.map(function (p) {
            var current = p.run_id === run.run_id;
            return h("tr", { class: current ? "current" : null }, [
              h("td", {}, current ? h("strong", {}, p.run_id) : h("a", { href: clusterHref(id, p.run_id) }, p.run_id)),
              h("td", {}, p.finished), h("td", {}, p.name),
              h("td", {}, shareBar(p.n_users, maxUsers, count(p.n_users))),
              h("td", { class: "num" }, count(p.n_conversations)), h("td", { class: "num" }, pct(p.share)),
              h("td", {}, concernBadge(p.concern_mean)),
            ]);
          })),
        ]),
      ]),
    ];
  }

  function changeRow(c, run, previous) {
    // A gone cluster has no name in this run: its name and page are the run before's.
    var link = c.name !== null ? h("a", { href: clusterHref(c.cluster_id, run.run_id) }, c.name)
      : h("a", { href: clusterHref(c.cluster_id, previous) }, c.previous_name);
    return h("tr", { "data-cluster-id": c.cluster_id }, [
      h("td", {}, [link, c.status === "split" || c.status === "merged"
        ? [" ", h("span", { class: "muted small" }, "(" + c.status + ")")] : null]),
      h("td", {}, c.facet + " · " + c.level),
      h("td", { class: "num" }, count(c.previous_n_users)),
      h("td", { class: "num" }, count(c.n_users)),
      h("td", { class: "num" }, signed(c.n_users_change)),
      h("td", {}, [concernBadge(c.concern_mean),
        c.concern_change ? [" ", h("span", { class: "muted small" }, signed(c.concern_change, 2))] : null]),
    ]);
  }

  function viewChanges(run) {
    var changes = DATA.changes[run.run_id] || { previous_run_id: null, groups: [] };
    var previous = changes.previous_run_id;
    var intro = h("section", { class: "intro" }, h("div", {}, [
      h("p", { class: "eyebrow" }, "Run " + run.run_id),
      h("h1", {}, "What changed"),
      h("p", { class: "muted", id: "changes-against" }, previous
        ? ["Against run ", h("a", { href: href("/", { run: previous }) }, previous), ", the run before it. " + DATA.changes_note]
        : DATA.no_previous_run),
    ]));
    if (!previous) return [intro];
    return [intro, changes.groups.map(function (group) {
      return h("section", { class: "card", id: "changes-" + group.key }, [
        h("header", { class: "facet-head" }, [h("h2", {}, group.title), h("span", { class: "muted" }, group.note)]),
        group.rows.length ? h("table", { class: "data" }, [
          h("thead", {}, h("tr", {}, ["Cluster", "Facet · level", "Users before", "Users now", "Change", "Concern"]
            .map(function (t, i) { return h("th", { scope: "col", class: i >= 2 && i <= 4 ? "num" : null }, t); }))),
          h("tbody", {}, group.rows.map(function (c) { return changeRow(c, run, previous); })),
        ]) : h("p", { class: "muted" }, "None."),
      ]);
    })];
  }

  function viewMap(run, params) {
    var maps = DATA.maps[run.run_id] || {};
    var facets = Object.keys(maps).sort();
    var intro = h("section", { class: "intro" }, h("div", {}, [
      h("p", { class: "eyebrow" }, "Run " + run.run_id),
      h("h1", {}, "Cluster map"),
      h("p", { class: "lede" }, "Clusters placed by similarity: nearby circles are about similar things. Size shows " +
        "distinct users, colour the mean concern score. Click a circle to open its cluster."),
    ]));
    if (!facets.length) return [intro, h("section", { class: "card empty" }, h("p", {}, "No cluster in this run has a map position."))];
    var facet = params.facet || (maps.request ? "request" : facets[0]);
    if (!maps[facet]) return notFound("No cluster of this facet has a map position in this run.");
    var levels = Object.keys(maps[facet]).map(Number).sort(function (a, b) { return a - b; });
    var level = params.level !== undefined && params.level !== "" ? Number(params.level) : levels[0];
    if (levels.indexOf(level) < 0) return notFound("No cluster of this level has a map position.");
    var points = maps[facet][String(level)];
    var byId = {};
    (DATA.clusters[run.run_id] || []).forEach(function (c) { byId[c.id] = c; });

    var facetSelect = h("select", { name: "facet" }, facets.map(function (f) { return h("option", { value: f, selected: f === facet }, f); }));
    var levelSelect = h("select", { name: "level" }, levels.map(function (l) {
      return h("option", { value: l, selected: l === level }, l + (l === 0 ? " (base clusters)" : ""));
    }));
    facetSelect.addEventListener("change", function () { location.hash = href("/map", { run: run.run_id, facet: facetSelect.value }); });
    levelSelect.addEventListener("change", function () {
      location.hash = href("/map", { run: run.run_id, facet: facet, level: levelSelect.value });
    });
    var legend = h("span", { class: "legend", "aria-label": "Concern colours" }, [1, 2, 3, 4, 5].map(function (l) {
      return h("span", { class: "legend-item" }, [h("span", { class: "dot concern-fill-" + l }), l + " " + DATA.concern_labels[l]]);
    }).concat([h("span", { class: "legend-item" }, [h("span", { class: "dot concern-fill-none" }), "not scored"])]));

    var width = DATA.map_size[0], height = DATA.map_size[1];
    var svg = s("svg", { class: "map", id: "cluster-map", viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "Map of " + points.length + " clusters of facet " + facet + ", level " + level }, [
      s("rect", { class: "map-bg", width: width, height: height, rx: 8 }),
      points.map(function (p) {
        var c = byId[p.id];
        var lvl = concernLevel(c.concern_mean);
        return s("a", { href: clusterHref(p.id, run.run_id), class: "map-point", "data-cluster-id": p.id }, [
          s("title", {}, c.name + " — " + count(c.n_users) + " users, " + count(c.n_conversations) +
            " conversations, concern " + concernText(c.concern_mean)),
          s("circle", { cx: p.cx, cy: p.cy, r: p.r, class: "concern-fill-" + (lvl || "none") }),
        ]);
      }),
      points.filter(function (p) { return p.label; }).map(function (p) {
        return s("text", { x: p.lx, y: p.ly, class: "map-label", "text-anchor": "middle" }, p.label);
      }),
    ]);
    return [
      intro,
      h("form", { class: "toolbar card" }, [h("label", {}, ["Facet", facetSelect]), h("label", {}, ["Level", levelSelect]),
        h("span", { class: "spacer" }), legend]),
      h("section", { class: "card map-card" }, [svg, h("p", { class: "note" }, points.length +
        " clusters. Positions come from the release (a 2-D projection of the clusters' members); axes have no units.")]),
    ];
  }

  function viewSearch(run, params) {
    var q = params.q || "";
    var clusters = DATA.clusters[run.run_id] || [];
    var byId = {};
    clusters.forEach(function (c) { byId[c.id] = c; });
    var input = h("input", { type: "search", name: "q", value: q, "aria-label": "Search clusters",
      placeholder: "Words in a cluster's name, description or keywords" });
    var form = h("form", { class: "big-search", role: "search" }, [input, h("button", { type: "submit", class: "button" }, "Search")]);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      location.hash = href("/search", { q: input.value, run: run.run_id });
    });
    var out = [h("section", { class: "intro" }, h("div", {}, [h("p", { class: "eyebrow" }, "Run " + run.run_id), h("h1", {}, "Search"), form]))];
    if (q) {
      var results = searchClusters(clusters, q);
      out.push(h("section", { class: "card" }, [
        h("header", { class: "facet-head" }, h("h2", { id: "result-count" },
          results.length + " cluster" + (results.length === 1 ? "" : "s") + " match “" + q + "”")),
        results.length ? h("ul", { class: "results", id: "results" }, results.map(function (c) {
          var path = ancestors(c, byId).map(function (a) { return " › " + a.name; }).join("");
          return h("li", { class: "result" }, [
            h("div", { class: "result-head" }, [h("a", { class: "result-name", href: clusterHref(c.id, run.run_id) }, c.name),
              concernBadge(c.concern_mean)]),
            h("p", { class: "muted small" }, c.facet + path + " · level " + c.level + " · " + count(c.n_users) + " users · " +
              count(c.n_conversations) + " conversations · " + pct(c.share)),
            c.description ? h("p", {}, c.description) : null,
            c.keywords.length ? h("ul", { class: "chips small" }, c.keywords.map(function (k) { return h("li", {}, k); })) : null,
          ]);
        })) : h("p", { class: "muted" }, "No released cluster matches. Try fewer or shorter words."),
      ]));
    }
    return out;
  }

  function notFound(message) {
    return h("section", { class: "card error-card" }, [
      h("p", { class: "eyebrow" }, "404 · not found"), h("h1", {}, "Nothing released here"), h("p", {}, message),
      h("p", {}, h("a", { class: "button", href: "#/" }, "Back to the clusters")),
    ]);
  }

  // -- page frame -----------------------------------------------------------------------

  var runSelect = document.getElementById("run-select");
  var searchInput = document.getElementById("search-input");
  DATA.runs.forEach(function (r, i) {
    runSelect.appendChild(h("option", { value: r.run_id }, r.run_id + " · " + r.finished + (i === 0 ? " · latest" : "")));
  });
  runSelect.addEventListener("change", function () {
    var route = parseHash();
    route.params.run = runSelect.value;
    location.hash = href(route.path, route.params);
  });
  document.getElementById("search-form").addEventListener("submit", function (event) {
    event.preventDefault();
    location.hash = href("/search", { q: searchInput.value, run: runSelect.value });
  });

  function render() {
    var route = parseHash();
    var run = findRun(route.params.run);
    var content;
    var nav = "tree";
    var cluster = /^\/cluster\/(.+)$/.exec(route.path);
    if (!DATA.runs.length) {
      content = h("section", { class: "card empty" }, h("h1", {}, "No run released yet"));
    } else if (!run) {
      content = notFound("There is no released run with this id.");
    } else if (route.path === "/") {
      content = viewTree(run, route.params);
    } else if (cluster) {
      content = viewCluster(run, decodeURIComponent(cluster[1]));
    } else if (route.path === "/changes") {
      content = viewChanges(run);
      nav = "changes";
    } else if (route.path === "/map") {
      content = viewMap(run, route.params);
      nav = "map";
    } else if (route.path === "/search") {
      content = viewSearch(run, route.params);
      nav = "search";
    } else {
      content = notFound("There is no such page.");
    }
    run = run || DATA.runs[0];
    app.replaceChildren();
    append(app, content);
    if (run) {
      runSelect.value = run.run_id;
      document.getElementById("brand").setAttribute("href", href("/", { run: run.run_id }));
      document.getElementById("nav-tree").setAttribute("href", href("/", { run: run.run_id }));
      document.getElementById("nav-map").setAttribute("href", href("/map", { run: run.run_id }));
      document.getElementById("nav-changes").setAttribute("href", href("/changes", { run: run.run_id }));
      var footer = document.getElementById("footer");
      footer.replaceChildren();
      append(footer, ["Released aggregates only. Every cluster and breakdown shown here has at least " + run.min_users +
        " distinct users and " + run.min_conversations + " conversations; smaller groups were suppressed by the privacy gate. Run ",
        h("code", {}, run.run_id), ", config ", h("code", {}, run.config_hash), ", finished " + run.finished + "."]);
    }
    document.getElementById("nav-tree").className = nav === "tree" ? "active" : "";
    document.getElementById("nav-map").className = nav === "map" ? "active" : "";
    document.getElementById("nav-changes").className = nav === "changes" ? "active" : "";
    searchInput.value = nav === "search" ? route.params.q || "" : "";
    window.scrollTo(0, 0);
  }

  window.addEventListener("hashchange", render);
  render();
})();
