"""Route matching cost: a Router of 100 routes of mixed shapes.

    python -m bench.bench_routing

Times ``Router.match`` (what every connection pays before its handler runs) for a path matching the
first route, the 50th, the last, a typed route whose value does not convert (so later routes are
tried), and a path matching none; next to a plain loop over 100 compiled regexes, the way a naive
router would do it (without converting values: for the typed miss it stops at the first regex that
matches, so that row is not a comparison).
"""

from __future__ import annotations

import functools
import re
import timeit
import uuid
from collections.abc import Callable
from typing import Any

from trio_ws import Router, WebSocket


def build() -> tuple[Router, list[str]]:
    router = Router()
    shapes = [
        "/api/v1/resource{i}",
        "/api/v1/resource{i}/{{item_id:int}}",
        "/chat/room{i}/{{room}}",
        "/users/{{user_id:int}}/feed{i}",
        "/files{i}/{{rest:path}}",
    ]
    patterns = []

    async def handler(ws: WebSocket, **params: Any) -> None:  # pragma: no cover - never called
        pass

    for i in range(100):
        pattern = shapes[i % len(shapes)].format(i=i)
        router.add_route(pattern, handler, name=f"r{i}")
        patterns.append(pattern)
    router.add_route("/doc/{doc_id:uuid}", handler, name="uuid")  # the 101st, for the typed miss
    return router, patterns


def path_for(pattern: str) -> str:
    return (
        pattern.replace("{item_id:int}", "12345")
        .replace("{room}", "lobby")
        .replace("{user_id:int}", "42")
        .replace("{rest:path}", "a/b/c.txt")
    )


def naive(patterns: list[str]) -> list[re.Pattern[str]]:
    out = []
    for pattern in patterns:
        regex = re.sub(
            r"\\{(\w+)(?::(\w+))?\\}", lambda m: "(.*)" if m[2] == "path" else "([^/]+)", re.escape(pattern)
        )
        out.append(re.compile(regex + r"\Z"))
    return out


def naive_match(regexes: list[re.Pattern[str]], path: str) -> re.Match[str] | None:
    return next((m for r in regexes if (m := r.match(path))), None)


def best(call: Callable[[], object], number: int) -> float:
    """Seconds per call, best of 5."""
    return min(timeit.repeat(call, number=number, repeat=5)) / number


def main() -> None:
    router, patterns = build()
    regexes = naive(patterns)
    cases = {
        "first route": path_for(patterns[0]),
        "50th route": path_for(patterns[49]),
        "100th route": path_for(patterns[99]),
        "typed value that does not convert": "/users/abc/feed3",
        "no route": "/nothing/here",
        "uuid route (101st)": f"/doc/{uuid.uuid4()}",
    }
    print(f"Router.match over {len(router.routes)} routes (best of 5, µs per call)\n")
    print("| path | trio_ws Router.match | naive loop over 100 regexes |")
    print("| --- | --- | --- |")
    for label, path in cases.items():
        found = router.match(path)
        assert (found is not None) is (label not in ("no route", "typed value that does not convert")), label
        number = 20_000
        ours = best(functools.partial(router.match, path), number)
        theirs = best(functools.partial(naive_match, regexes, path), number)
        print(f"| {label}: `{path}` | {ours * 1e6:.2f} | {theirs * 1e6:.2f} |")


if __name__ == "__main__":
    main()
