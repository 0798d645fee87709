// Small enhancements for the clio pages; every page also works without script.
(function () {
  "use strict";

  // Selects and fields marked data-autosubmit submit their form when changed.
  document.querySelectorAll("[data-autosubmit]").forEach(function (field) {
    field.addEventListener("change", function () {
      var reset = field.getAttribute("data-reset");
      if (reset && field.form.elements[reset]) {
        field.form.elements[reset].disabled = true;
      }
      field.form.submit();
    });
  });

  // "Expand all" / "Collapse all" open or close every node of the trees.
  document.querySelectorAll("[data-tree]").forEach(function (button) {
    button.addEventListener("click", function () {
      var open = button.getAttribute("data-tree") === "expand";
      document.querySelectorAll(".tree details").forEach(function (node) {
        node.open = open;
      });
    });
  });

  // "/" focuses the search box, as on many sites.
  document.addEventListener("keydown", function (event) {
    var search = document.getElementById("search-input");
    var target = event.target;
    var typing = target && (target.tagName === "INPUT" || target.tagName === "SELECT" ||
      target.tagName === "TEXTAREA");
    if (event.key === "/" && search && !typing) {
      event.preventDefault();
      search.focus();
    }
  });
})();
