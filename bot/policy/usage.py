"""Usage in words: a turn's footer and a thread's `!usage` answer, with an estimated cost."""

from __future__ import annotations

from dataclasses import dataclass

from storage import Usage

MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens, and per web search (`USAGE_PRICES`; the model's list
    prices are in `bot/model/catalog.py`). Web fetches cost only the tokens they read, and a
    request with a web tool pays no code-execution charge, so none is counted."""

    input: float
    cache_write: float
    cache_read: float
    output: float
    web_search: float = 0.01
    """$10 per 1,000 searches."""

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input
            + usage.cache_creation_input_tokens * self.cache_write
            + usage.cache_read_input_tokens * self.cache_read
            + usage.output_tokens * self.output
        ) / MILLION + usage.web_searches * self.web_search


def parse_prices(text: str, base: Prices | None = None) -> Prices:
    """`input=3,cache_write=3.75,cache_read=0.3,output=15` -> Prices: every price, or (given
    `base`) any subset of them in place of `base`'s."""
    values: dict[str, float] = dict(vars(base)) if base is not None else {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, number = item.partition("=")
        name = name.strip()
        if name not in Prices.__dataclass_fields__:
            raise ValueError(f"unknown price {name!r} (use input, cache_write, cache_read, output, web_search)")
        values[name] = float(number)
    missing = [name for name in ("input", "cache_write", "cache_read", "output") if name not in values]
    if missing:
        raise ValueError(f"missing price(s) {', '.join(missing)}")
    return Prices(**values)


def tokens(count: int) -> str:
    """12,345 -> "12.3k"; small counts as they are."""
    if count >= MILLION:
        return f"{count / MILLION:.2f}M"
    if count >= 10_000:
        return f"{count / 1000:.0f}k"
    if count >= 1000:
        return f"{count / 1000:.1f}k"
    return str(count)


def dollars(amount: float) -> str:
    return f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"


def turn_footer(usage: Usage, prices: Prices) -> str:
    """The part of a reply's last line that says what the turn used."""
    cached = f" ({tokens(usage.cache_read_input_tokens)} cached)" if usage.cache_read_input_tokens else ""
    web = "".join(f" · {part}" for part in web_words(usage))
    return (
        f"{tokens(usage.prompt_tokens)} in{cached} · {tokens(usage.output_tokens)} out{web}"
        f" · ~{dollars(prices.cost(usage))}"
    )


def web_words(usage: Usage) -> list[str]:
    """"2 web searches", "1 page read": what the web tools did ([] when nothing)."""
    parts = []
    if usage.web_searches:
        parts.append(f"{usage.web_searches} web search{'es' if usage.web_searches != 1 else ''}")
    if usage.web_fetches:
        parts.append(f"{usage.web_fetches} page{'s' if usage.web_fetches != 1 else ''} read")
    return parts


def usage_report(thread: Usage, person: Usage, prices: Prices, *, reserved: int = 0) -> str:
    """The answer to `!usage`: the thread's totals, the asker's own across every thread, and
    what their answers running now have reserved of their budget."""
    lines = [
        f"*Usage in this thread* ({thread.turns} turn{'s' if thread.turns != 1 else ''},"
        f" {thread.code_runs} code run{'s' if thread.code_runs != 1 else ''}):",
        f"• input {thread.input_tokens:,} · cache writes {thread.cache_creation_input_tokens:,}"
        f" · cache reads {thread.cache_read_input_tokens:,} · output {thread.output_tokens:,} tokens",
        *([f"• {' · '.join(web_words(thread))}"] if web_words(thread) else []),
        f"• estimated cost {dollars(prices.cost(thread))}",
        f"_Yours across all threads: {person.turns} turns, about {dollars(prices.cost(person))}._",
    ]
    if reserved:
        running = dollars(prices.cost(Usage(input_tokens=reserved)))
        lines.append(f"_Reserved by your answers running now: {tokens(reserved)} input tokens (about {running})._")
    return "\n".join(lines)
