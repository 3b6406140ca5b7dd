"""What the speculative-decoding tabs show alike: the generated text with each token coloured by who
produced it (an accepted draft or the full model), and the per-decoder comparison table (identical
to greedy, acceptance, tokens per pass, time, speedup over plain greedy in the same request)."""
from __future__ import annotations

import html
from typing import Callable

# Inline styles, so the colours survive whatever CSS the page or the HTML component applies.
BOX_STYLE = ("white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:0.9em;line-height:1.45;"
             "padding:8px;border-radius:6px;border:1px solid #8884;max-height:420px;overflow:auto")
SPAN_STYLE = {
    "prompt": "opacity:0.6",
    "draft": "background:#2e9d4a40;border-bottom:2px solid #2e9d4a",
    "full": "background:#e8892440;border-bottom:2px solid #e88924",
}
DEFAULT_TITLES = {"draft": "drafted, accepted by the full model", "full": "from the full model"}


def colored_html(prompt: str, pieces: list[str], sources: list[str], titles: dict[str, str] | None = None) -> str:
    """The prompt (dimmed) and each new token's text in a span of class ``kg-<source>``."""
    titles = titles or DEFAULT_TITLES
    spans = [f'<span class="kg-prompt" style="{SPAN_STYLE["prompt"]}">{html.escape(prompt)}</span>']
    for piece, source in zip(pieces, sources):
        spans.append(f'<span class="kg-{source}" style="{SPAN_STYLE[source]}" title="{titles[source]}">'
                     f'{html.escape(piece)}</span>')
    return f'<div class="kg-out" style="{BOX_STYLE}">' + "".join(spans) + "</div>"


def per_token_ms(decoded) -> float:
    return 1e3 * decoded.seconds / max(1, len(decoded.tokens))


def comparison_rows(columns: list[tuple[str, object]], greedy, extra: list[tuple[str, Callable, str]] = ()) -> list[str]:
    """A markdown table: one column per speculative decode (label, `Decoded`) and one for plain
    greedy (the reference, same request); ``extra`` rows are (label, fn(decoded) -> cell, greedy cell)
    inserted before the timings."""
    header = "| | " + " | ".join(label for label, _ in columns) + " | Plain greedy |"
    rows = [header, "|---" * (len(columns) + 2) + "|"]

    def row(label, fn, plain):
        rows.append(f"| {label} | " + " | ".join(fn(d) for _, d in columns) + f" | {plain} |")

    row("identical to greedy", lambda d: "**yes**" if d.tokens == greedy.tokens else "**no**", "(reference)")
    row("acceptance rate", lambda d: f"{d.acceptance_rate:.0%} ({d.accepted}/{d.drafted})", "n/a")
    row("tokens per verification pass", lambda d: f"{d.tokens_per_pass:.2f}", "1.00")
    for label, fn, plain in extra:
        row(label, fn, plain)
    row("wall time", lambda d: f"{d.seconds:.3f} s", f"{greedy.seconds:.3f} s")
    row("ms per token", lambda d: f"{per_token_ms(d):.1f}", f"{per_token_ms(greedy):.1f}")
    row("speedup over plain greedy", lambda d: f"**{greedy.seconds / d.seconds:.2f}x**", "1.00x")
    return rows


def identical_text(decoded, greedy) -> str:
    return "yes" if decoded.tokens == greedy.tokens else "no"
