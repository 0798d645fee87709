"""Small conversations and scripted LLM answers for running the real flow in a test."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from tests.fakes.loopback import Reply, Seen

QUESTIONS = [
    "How long should I roast a chicken for a family dinner?",
    "Can I bake bread without yeast for a picnic?",
    "What spices go well in a vegetable curry?",
    "How do I make a soup thicker without cream?",
    "Why does my Python loop never stop when I read the file?",
    "How do I sort a list of numbers in JavaScript?",
]
CLUSTER_NAME = "Cooking and coding questions"


def two_per_user(n: int, questions: Sequence[str] = QUESTIONS) -> list[dict[str, Any]]:
    """`n` OpenAI-style conversations, two per user, each text unique."""
    return [
        {
            "conversation_id": f"c{i}",
            "user_id": f"user-{i // 2}",
            "messages": [
                {"role": "user", "content": f"{questions[i % len(questions)]} ({i})"},
                {"role": "assistant", "content": "Here is a short answer."},
            ],
        }
        for i in range(n)
    ]


def scripted_answers(audit_score: int) -> Callable[[Seen], Reply]:
    """An openai-compatible responder: fixed facet answers and cluster names, and
    `audit_score` for every privacy-audit prompt."""

    def answer(seen: Seen) -> Reply:
        properties = seen.body["response_format"]["json_schema"]["schema"]["properties"]
        if "score" in properties:
            content = {"score": audit_score, "reason": "scripted"}
        elif "name" in properties:
            content = {"name": CLUSTER_NAME, "description": "People ask about food and code."}
        else:
            content = {name: "Help with everyday questions" for name in properties}
            content.update({k: 1 for k, v in properties.items() if v.get("type") == "integer"})
        usage = {"prompt_tokens": 10, "completion_tokens": 5}
        message = {"content": json.dumps(content)}
        return Reply(200, {"choices": [{"message": message}], "usage": usage})

    return answer
