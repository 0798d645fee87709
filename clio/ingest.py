"""Ingest: read sources into canonical conversations; quarantine every record that cannot be used.

Record shapes are detected per record:
- OpenAI-style `{"messages": [{"role", "content"}]}` (also under `conversation`, as in
  LMSYS-Chat and WildChat); content may be a list of `{"type": "text", "text"}` parts.
- ShareGPT `{"conversations": [{"from", "value"}]}`.
- Alpaca / LLaMA-Factory `{"instruction", "input", "output", "history", "system"}`.
- A `Human: … Assistant: …` transcript string under one of `IngestConfig.transcript_keys`
  (HH-RLHF's `chosen`); a message list under such a key is read like `messages`.

Nothing is dropped silently: every record read is either accepted or quarantined with a reason
code, so `n_input == len(conversations) + len(quarantine)` unless `limit` stopped reading.
Quarantine details and logs never contain input text.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from clio.config import IngestConfig
from clio.formats import IngestError, RawRecord, Source, read_records, resolve_sources
from clio.progress import Progress
from clio.records import Conversation, Message, QuarantineRecord, Role

__all__ = ["IngestError", "IngestResult", "ingest", "sample_path"]

_log = logging.getLogger("clio.ingest")

SAMPLE_FILE = "hh_rlhf_harmless_base_test.jsonl.gz"

_ROLES: dict[str, Role] = {
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "chatgpt": "assistant",
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system prompt
}
_MESSAGE_LIST_KEYS = ("messages", "conversation", "conversations")
_ROLE_KEYS = ("role", "from")
_CONTENT_KEYS = ("content", "value", "text")
_ID_KEYS = ("conversation_id", "id")
_USER_KEYS = ("user_id", "user")
_TIMESTAMP_KEYS = ("timestamp", "created_at")

_TRANSCRIPT_TURN = re.compile(r"\n\n(Human|Assistant|User|AI): ")
_TRANSCRIPT_ROLES: dict[str, Role] = {
    "Human": "user",
    "User": "user",
    "Assistant": "assistant",
    "AI": "assistant",
}
# Unicode category Cc except tab, newline and carriage return: C0, DEL and C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Lone surrogates come from `\ud800`-style JSON escapes; they cannot be encoded as UTF-8.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_EPOCH = re.compile(r"-?\d+(\.\d+)?")


@dataclass
class IngestResult:
    conversations: list[Conversation]  # accepted, in input order
    quarantine: list[QuarantineRecord]  # one per rejected record
    n_input: int  # records read (accepted + quarantined)
    n_truncated: int  # accepted conversations with a message or messages cut
    n_missing_user: int  # accepted conversations given a per-conversation user id
    n_accepted: int = 0  # accepted, kept or not (see `ingest`'s `keep`)

    def quarantine_counts(self) -> dict[str, int]:
        """Quarantined records per reason code, sorted by code."""
        return dict(sorted(Counter(q.reason for q in self.quarantine).items()))


def sample_path() -> Path:
    """The HH-RLHF sample shipped in the package (read when no input is given)."""
    return Path(str(resources.files("clio").joinpath("samples", SAMPLE_FILE)))


def ingest(
    paths: Sequence[str | Path] | str | Path,
    config: IngestConfig,
    *,
    limit: int | None = None,
    keep: Callable[[int, Conversation], bool] | None = None,
) -> IngestResult:
    """Read every source into conversations, quarantining what cannot be used.

    `paths` are files, directories (their supported files, sorted) or `FILE.duckdb::TABLE`.
    Reading stops once `limit` conversations have been accepted. Raises `IngestError` for
    inputs that cannot be read at all, before any record is read. `keep(index, conversation)`,
    when given, decides which accepted conversations the result holds (`index` counts
    accepted ones from 0); the others are still counted and deduplicated against, so one
    slice of a large input can be read without holding the rest in memory.
    """
    if limit is not None and limit < 0:
        raise IngestError(f"limit must be zero or more, not {limit}")
    sources = resolve_sources(paths)
    result = IngestResult([], [], 0, 0, 0)
    accepted_ids: set[str] = set()
    accepted_content: set[str] = set()

    def limit_reached() -> bool:
        return limit is not None and result.n_accepted >= limit

    with Progress("ingest", total=len(sources), unit="file", logger=_log) as progress:
        for source in sources:
            if limit_reached():
                break
            with closing(read_records(source)) as records:
                for raw in records:
                    result.n_input += 1
                    outcome = _convert(raw, source, config)
                    if isinstance(outcome, QuarantineRecord):
                        result.quarantine.append(outcome)
                        continue
                    conversation, missing_user = outcome
                    content = conversation.content_hash()
                    duplicate = _duplicate(conversation, content, accepted_ids, accepted_content)
                    if duplicate is not None:
                        result.quarantine.append(
                            _quarantine(raw, source, *duplicate, conversation.conversation_id)
                        )
                        continue
                    accepted_ids.add(conversation.conversation_id)
                    accepted_content.add(content)
                    if keep is None or keep(result.n_accepted, conversation):
                        result.conversations.append(conversation)
                    result.n_accepted += 1
                    result.n_truncated += conversation.truncated
                    result.n_missing_user += missing_user
                    if limit_reached():
                        break
            progress.update()

    _log.info(
        "ingest: %d records read, %d accepted, %d quarantined %s, %d truncated, "
        "%d given a per-conversation user id",
        result.n_input,
        result.n_accepted,
        len(result.quarantine),
        result.quarantine_counts(),
        result.n_truncated,
        result.n_missing_user,
    )
    n_without_user = result.quarantine_counts().get("missing_user_id", 0)
    if n_without_user:  # said plainly: a whole input without ids would release nothing
        _log.warning(
            "ingest: %d records without a user id quarantined (ingest.missing_user_id: "
            "quarantine); set it to per_conversation only for inputs known to hold one "
            "conversation per person",
            n_without_user,
        )
    return result


def _duplicate(
    conversation: Conversation, content: str, accepted_ids: set[str], accepted_content: set[str]
) -> tuple[str, str] | None:
    """(reason, detail) when an accepted conversation already has this id or these messages."""
    if conversation.conversation_id in accepted_ids:
        return "duplicate_id", "conversation id already accepted earlier in this input"
    if content in accepted_content:
        return "duplicate_content", "same messages as a conversation accepted earlier"
    return None


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _quarantine(
    raw: RawRecord, source: Source, reason: str, detail: str, conversation_id: str | None = None
) -> QuarantineRecord:
    return QuarantineRecord(
        source=source.name,
        location=raw.location,
        reason=reason,
        detail=detail,
        raw_sha256=raw.raw_sha256,
        conversation_id=conversation_id,
    )


def _convert(
    raw: RawRecord, source: Source, config: IngestConfig
) -> tuple[Conversation, bool] | QuarantineRecord:
    """A conversation and whether it was given a per-conversation user id, or why not."""
    if raw.error is not None:
        return _quarantine(raw, source, *raw.error)
    record = raw.value
    if not isinstance(record, dict):
        detail = f"expected an object, found {_type_name(record)}"
        return _quarantine(raw, source, "not_an_object", detail)
    conversation_id = None
    try:
        conversation_id = _conversation_id(record, source, raw.number)
        messages, truncated = _messages(record, config)
        user_id, missing_user = _user_id(record, conversation_id, config)
        timestamp = _timestamp(record)
    except _Rejected as rejected:
        return _quarantine(raw, source, rejected.reason, rejected.detail, conversation_id)
    conversation = Conversation(
        conversation_id=conversation_id,
        user_id=user_id,
        timestamp=timestamp,
        messages=messages,
        source=source.name,
        truncated=truncated,
    )
    return conversation, missing_user


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a value of an unsupported type"


def _first_present(record: dict[str, Any], keys: Sequence[str]) -> tuple[str, Any] | None:
    """The first key with a value that is not null or blank text."""
    for key in keys:
        value = record.get(key)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return key, value
    return None


def _identifier(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Rejected(
            "invalid_id", f"`{key}` is {_type_name(value)}, expected text or an integer"
        )
    text = str(value)
    if _CONTROL.search(text) or _SURROGATE.search(text):
        raise _Rejected("invalid_id", f"`{key}` contains control characters or invalid text")
    return text


def _conversation_id(record: dict[str, Any], source: Source, number: int) -> str:
    found = _first_present(record, _ID_KEYS)
    if found is None:
        return f"{source.stem}:{number:06d}"
    return _identifier(*found)


def _user_id(
    record: dict[str, Any], conversation_id: str, config: IngestConfig
) -> tuple[str, bool]:
    found = _first_present(record, _USER_KEYS)
    if found is not None:
        return _identifier(*found), False
    if config.missing_user_id == "quarantine":
        raise _Rejected("missing_user_id", "no `user_id` or `user` field")
    return f"conv:{conversation_id}", True


def _timestamp(record: dict[str, Any]) -> datetime | None:
    found = _first_present(record, _TIMESTAMP_KEYS)
    if found is None:
        return None
    key, value = found
    try:
        return _to_utc(value)
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        detail = f"`{key}` is not an ISO-8601 time or epoch seconds ({type(exc).__name__})"
        raise _Rejected("invalid_timestamp", detail) from exc


def _to_utc(value: Any) -> datetime:
    """ISO-8601 text, epoch seconds (number or digits) or a datetime -> aware UTC datetime.

    A time without a zone is taken to be UTC.
    """
    if isinstance(value, str):
        text = value.strip()
        value = float(text) if _EPOCH.fullmatch(text) else datetime.fromisoformat(text)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        raise TypeError(type(value).__name__)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _messages(record: dict[str, Any], config: IngestConfig) -> tuple[tuple[Message, ...], bool]:
    """The record's messages, checked and truncated to the configured limits."""
    messages = _find_messages(record, config)
    if not messages or all(not m.content.strip() for m in messages):
        raise _Rejected("empty_messages", "no message has any content")
    for index, message in enumerate(messages, 1):
        if _CONTROL.search(message.content):
            detail = f"message {index} contains control characters (other than tab and newlines)"
            raise _Rejected("control_characters", detail)
        if _SURROGATE.search(message.content):
            detail = f"message {index} contains an unpaired UTF-16 surrogate escape"
            raise _Rejected("invalid_utf8", detail)
    if not any(m.role == "user" for m in messages):
        raise _Rejected("no_user_turn", "the conversation has no user message")
    truncated = len(messages) > config.max_messages
    kept: list[Message] = []
    for message in messages[: config.max_messages]:
        if len(message.content) > config.max_message_chars:
            message = Message(message.role, message.content[: config.max_message_chars])
            truncated = True
        kept.append(message)
    return tuple(kept), truncated


def _find_messages(record: dict[str, Any], config: IngestConfig) -> list[Message]:
    for key in _MESSAGE_LIST_KEYS:
        if record.get(key) is not None:
            return _message_list(key, record[key])
    if record.get("instruction") is not None and record.get("output") is not None:
        return _alpaca_messages(record)
    for key in config.transcript_keys:
        value = record.get(key)
        if isinstance(value, str):
            return _transcript_messages(key, value)
        if isinstance(value, list):
            return _message_list(key, value)
    fields = ", ".join(
        f"`{k}`" for k in (*_MESSAGE_LIST_KEYS, "instruction", *config.transcript_keys)
    )
    raise _Rejected("no_messages", f"none of the fields {fields} holds a conversation")


def _message_list(key: str, value: Any) -> list[Message]:
    if isinstance(value, str):  # e.g. a CSV column holding JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _Rejected(
                "invalid_json", f"`{key}` holds text that is not JSON: {exc.msg}"
            ) from exc
    if not isinstance(value, list):
        raise _Rejected("no_messages", f"`{key}` is {_type_name(value)}, expected a list")
    return [_message(index, item) for index, item in enumerate(value, 1)]


def _message(index: int, item: Any) -> Message:
    if not isinstance(item, dict):
        detail = f"message {index} is {_type_name(item)}, expected an object"
        raise _Rejected("invalid_message", detail)
    label = next((item[k] for k in _ROLE_KEYS if item.get(k) is not None), None)
    role = _ROLES.get(label.strip().lower()) if isinstance(label, str) else None
    if role is None:
        which = "no role" if label is None else "an unrecognised role"
        raise _Rejected("unknown_role", f"message {index} has {which}")
    content = next((item[k] for k in _CONTENT_KEYS if k in item), None)
    return Message(role, _content_text(index, content))


def _content_text(index: int, content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(_is_text_part(part) for part in content):
        return "\n".join(part["text"] for part in content)
    detail = f"message {index} content is {_type_name(content)}, expected text or text parts"
    raise _Rejected("non_string_content", detail)


def _is_text_part(part: Any) -> bool:
    return (
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
    )


def _alpaca_messages(record: dict[str, Any]) -> list[Message]:
    """LLaMA-Factory's Alpaca shape: earlier turns in `history`, the last in instruction/output."""
    system, history = record.get("system"), record.get("history") or []
    instruction, extra, output = record["instruction"], record.get("input"), record["output"]
    texts = [system, instruction, extra, output]
    if not all(t is None or isinstance(t, str) for t in texts):
        raise _Rejected("non_string_content", "instruction, input, output and system must be text")
    if not isinstance(history, list) or not all(
        isinstance(turn, list | tuple) and len(turn) == 2 and all(isinstance(t, str) for t in turn)
        for turn in history
    ):
        raise _Rejected("invalid_message", "`history` must be a list of [user, assistant] pairs")
    messages = [Message("system", system)] if system else []
    for user_text, assistant_text in history:
        messages += [Message("user", user_text), Message("assistant", assistant_text)]
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    return [*messages, Message("user", prompt), Message("assistant", output)]


def _transcript_messages(key: str, text: str) -> list[Message]:
    """`\\n\\nHuman: …\\n\\nAssistant: …` -> messages (HH-RLHF's format)."""
    parts = _TRANSCRIPT_TURN.split("\n\n" + text.lstrip("\n"))
    if len(parts) == 1:
        raise _Rejected("no_messages", f"`{key}` holds no Human:/Assistant: turns")
    if parts[0].strip():
        raise _Rejected(
            "unknown_role", f"`{key}` has text before its first turn, without a speaker"
        )
    return [
        Message(_TRANSCRIPT_ROLES[speaker], body.strip())
        for speaker, body in zip(parts[1::2], parts[2::2], strict=True)
    ]
