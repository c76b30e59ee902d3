"""Seed prompts for self-distillation: templates x topics, drawn with a seeded RNG.

A prompt is a JSON-friendly dict: {"kind", "messages": [{"role", "content"}], "topic", "derive"}.
`derive` marks prompts whose answers seed a second round: "passage" (the answer becomes the
passage of a summarize / question-answering / rewrite task: copying matters for drafting) or
None. Follow-up turns (`followup_task`) can be derived from any answered prompt.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from . import seed_data as D

SEEDS_VERSION = 1  # bump when the prompt lists change (part of the data cache key)

CATEGORY_WEIGHTS = {
    "explain": 0.20,
    "howto": 0.08,
    "writing": 0.12,
    "roleplay": 0.05,
    "math": 0.09,
    "reasoning": 0.06,
    "coding": 0.12,
    "extraction": 0.06,
    "translation": 0.07,
    "paragraph": 0.15,
}


def prompt(kind: str, text: str, topic: str | None = None, derive: str | None = None) -> dict:
    return {
        "kind": kind,
        "messages": [{"role": "user", "content": text}],
        "topic": topic,
        "derive": derive,
    }


def _explain(rng: random.Random) -> list[dict]:
    templates = (
        "Explain {t}.", "What is {t}?", "Can you explain {t} in simple terms?",
        "Why is {t} important?", "Give me a short overview of {t}.", "How does {t} work?",
        "What are the main ideas behind {t}?", "What are common misconceptions about {t}?",
        "Tell me three interesting facts about {t}.", "What should everyone know about {t}?",
    )  # fmt: skip
    topics = D.STEM_TOPICS + D.HUMANITIES_TOPICS + D.EVERYDAY_TOPICS
    out = [prompt("explain", tpl.format(t=t), t) for tpl in templates for t in topics]
    out += [prompt("explain", f"Explain {t} to a {a}.", t) for t in topics for a in D.AUDIENCES]
    return out


def _howto(rng: random.Random) -> list[dict]:
    templates = (
        "How do I {t}?", "Give me step-by-step instructions to {t}.",
        "What's the best way to {t}?", "I want to {t}. Where should I start?",
        "What are common mistakes people make when they try to {t}?",
    )  # fmt: skip
    return [prompt("howto", tpl.format(t=t), t) for tpl in templates for t in D.HOWTO_TASKS]


def _writing(rng: random.Random) -> list[dict]:
    out = [
        prompt("writing", f"Write a {tone} email to {who} about {what}.", what)
        for tone in D.EMAIL_TONES
        for who in D.EMAIL_RECIPIENTS
        for what in D.EMAIL_SUBJECTS
    ]
    rng.shuffle(out)
    out = out[:300]
    out += [
        prompt("writing", f"Write a short story about {c} who {e}.", c)
        for c in D.STORY_CHARACTERS
        for e in D.STORY_EVENTS
    ]
    out += [
        prompt("writing", f"Write a {form} about {t}.", t)
        for form in D.POEM_FORMS
        for t in D.POEM_TOPICS
    ]
    out += [
        prompt("writing", tpl.format(product=p), p) for tpl in D.OTHER_WRITING for p in D.PRODUCTS
    ]
    return out


def _roleplay(rng: random.Random) -> list[dict]:
    out = []
    for role, request in D.ROLES:
        out.append(prompt("roleplay", f"Pretend you are {role}. {request}", role))
        out.append(prompt("roleplay", f"You are {role}. Stay in character. {request}", role))
        p = prompt("roleplay", request, role)
        p["messages"].insert(0, {"role": "system", "content": f"You are {role}."})
        out.append(p)
    return out


def _math(rng: random.Random) -> list[dict]:
    out = []
    for _ in range(500):
        name, other = rng.sample(D.NAMES, 2)
        obj = rng.choice(D.OBJECTS)
        a, b, c = rng.randint(2, 60), rng.randint(2, 30), rng.randint(2, 9)
        price = rng.choice(("0.50", "1.25", "2", "3.50", "4", "12"))
        forms = (
            f"{name} has {a} {obj} and gives {b} to {other}. How many does {name} have left?",
            f"{name} buys {c} packs of {obj}; each pack holds {b}. How many is that in total?",
            f"{obj.capitalize()} cost ${price} each. How much do {a} {obj} cost?",
            f"A train travels at {a + 40} km/h for {c} hours. How far does it go?",
            f"What is {a * 7} divided by 7, plus {b}?",
            f"What is {a} times {b}? Show your work.",
            f"Solve for x: {c}x + {b} = {c * a + b}.",
            f"What is {c * 5}% of {a * 20}?",
            f"{name} reads {b} pages a day. How many days to finish a {b * a}-page book?",
            f"A rectangle is {a} cm long and {b} cm wide. What are its area and perimeter?",
        )
        text = rng.choice(forms)
        out.append(prompt("math", text, None))
    return out


def _reasoning(rng: random.Random) -> list[dict]:
    out = []
    for a, b, c in D.CATEGORIES_AB:
        out.append(prompt("reasoning", f"All {a} are {b}, and all {b} are {c}. Are all {a} {c}?"))
        out.append(prompt("reasoning", f"All {a} are {b}. Are all {b} {a}? Explain."))
    for _ in range(150):
        x, y, z = rng.sample(D.NAMES, 3)
        start, step = rng.randint(1, 9), rng.randint(2, 5)
        seq = ", ".join(str(start * step**i) for i in range(4))
        forms = (
            f"{x} is taller than {y}, and {y} is taller than {z}. Who is the shortest?",
            f"What comes next in the sequence {seq}, ...? Explain the pattern.",
            f"{x} is older than {y}. {z} is younger than {y}. Who is the oldest?",
            f"If {x} arrives before {y} and {z} arrives after {y}, who arrives second?",
            f"{x} has twice as many coins as {y}, who has {start + 3}. How many coins in all?",
        )
        out.append(prompt("reasoning", rng.choice(forms)))
    out += [
        prompt("reasoning", q)
        for q in (
            "Which is heavier, a kilogram of feathers or a kilogram of iron?",
            "If it takes 5 machines 5 minutes to make 5 widgets, how long do 100 machines take "
            "to make 100 widgets?",
            "A bat and a ball cost $1.10 together. The bat costs $1 more than the ball. "
            "How much does the ball cost?",
            "Is it better to be early or on time? Give arguments for both sides.",
            "What are the pros and cons of working from home?",
        )
    ]
    return out


def _coding(rng: random.Random) -> list[dict]:
    out = [
        prompt("coding", f"Write a {lang} function that {task}.", task)
        for lang in D.LANGUAGES[:6]
        for task in D.CODE_TASKS
    ]
    out += [
        prompt("coding", f"Explain what this code does:\n\n```\n{s}\n```") for s in D.CODE_SNIPPETS
    ]
    out += [
        prompt("coding", f"Find and fix the bug in this code:\n\n```python\n{s}\n```")
        for s in D.BUGGY_SNIPPETS
    ]
    out += [
        prompt("coding", f"What is the difference between {a} and {b}?") for a, b in D.CODE_PAIRS
    ]
    return out


def _extraction(rng: random.Random) -> list[dict]:
    out = []
    for _ in range(200):
        p1, p2 = rng.sample(D.PEOPLE, 2)
        city, comp, job = rng.choice(D.CITIES), rng.choice(D.COMPANIES), rng.choice(D.JOBS)
        day, month, year = rng.randint(1, 28), rng.choice(D.MONTHS), rng.randint(1990, 2024)
        age = rng.randint(22, 67)
        text = (
            f"{p1}, a {age}-year-old {job} from {city}, joined {comp} on {month} {day}, {year}. "
            f"Her manager, {p2}, said the team had grown to {rng.randint(5, 90)} people."
        )
        forms = (
            f"Extract all names, places and dates from this text:\n\n{text}",
            f"Convert this text to JSON with the keys name, age, job, city and company:\n\n{text}",
            f"Who is the manager in this text, and where is the new employee from?\n\n{text}",
            f"List every number that appears in this text:\n\n{text}",
        )
        out.append(prompt("extraction", rng.choice(forms)))
    return out


def _translation(rng: random.Random) -> list[dict]:
    out = [
        prompt("translation", tpl.format(lang=lang, s=s))
        for s in D.EN_SENTENCES
        for lang in D.TARGET_LANGUAGES
        for tpl in ("Translate to {lang}: {s}", 'How do you say "{s}" in {lang}?')
    ]
    out += [
        prompt("translation", f"Translate this {lang} sentence into English: {s}")
        for lang, s in D.FOREIGN_SENTENCES
    ]
    return out


def _paragraph(rng: random.Random) -> list[dict]:
    templates = (
        "Write a short paragraph about {t}.",
        "Write one informative paragraph about {t}.",
        "Write a paragraph explaining {t} for a general audience.",
    )
    return [
        prompt("paragraph", tpl.format(t=t), t, "passage")
        for tpl in templates
        for t in D.PASSAGE_TOPICS
    ]


_BUILDERS: dict[str, Callable[[random.Random], list[dict]]] = {
    "explain": _explain,
    "howto": _howto,
    "writing": _writing,
    "roleplay": _roleplay,
    "math": _math,
    "reasoning": _reasoning,
    "coding": _coding,
    "extraction": _extraction,
    "translation": _translation,
    "paragraph": _paragraph,
}


def base_prompts(seed: int, n: int = 4000) -> list[dict]:
    """Up to `n` distinct prompts, categories interleaved by CATEGORY_WEIGHTS (deterministic)."""
    pools: dict[str, list[dict]] = {}
    for kind, build in _BUILDERS.items():
        rng = random.Random(f"edgespec-distill:{seed}:{kind}")
        pool = build(rng)
        rng.shuffle(pool)
        pools[kind] = pool
    pick = random.Random(f"edgespec-distill:{seed}:order")
    out: list[dict] = []
    seen: set[str] = set()
    while len(out) < n:
        kinds = [k for k, pool in pools.items() if pool]
        if not kinds:
            break
        kind = pick.choices(kinds, weights=[CATEGORY_WEIGHTS[k] for k in kinds])[0]
        p = pools[kind].pop()
        key = repr(p["messages"])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


PASSAGE_TEMPLATES = (
    "Summarize the following passage in one or two sentences.\n\n{p}",
    "{p}\n\nSummarize the text above.",
    "According to the passage below, what is the main point?\n\n{p}",
    "Read the passage and answer: what are two facts it mentions about {t}?\n\n{p}",
    "Rewrite the following paragraph in simpler language:\n\n{p}",
    "Correct any grammar mistakes in this text and return the corrected text:\n\n{p}",
    "Extract the key terms from this passage as a bulleted list:\n\n{p}",
    "Give this passage a title:\n\n{p}",
    "Translate the first sentence of this passage into {lang}:\n\n{p}",
    "Based on the passage, write three quiz questions with answers.\n\n{p}",
    "Continue this text with one more paragraph:\n\n{p}",
    "{p}\n\nAccording to the passage, why does {t} matter?",
)


def clean_passage(text: str, max_words: int = 150) -> str | None:
    """The answer trimmed to whole sentences within `max_words`; None if too short to use."""
    words = text.strip().split()
    if len(words) < 25:
        return None
    cut = " ".join(words[:max_words])
    end = max(cut.rfind("."), cut.rfind("!"), cut.rfind("?"))
    if end > len(cut) // 2:
        cut = cut[: end + 1]
    return cut


def passage_task(passage: str, topic: str | None, rng: random.Random) -> dict:
    """A summarize / question-answering / rewrite prompt over `passage`."""
    tpl = rng.choice(PASSAGE_TEMPLATES)
    text = tpl.format(p=passage, t=topic or "the topic", lang=rng.choice(D.TARGET_LANGUAGES))
    return prompt("passage", text, topic)


def followup_task(messages: list[dict], answer: str, rng: random.Random) -> dict:
    """A second user turn after `messages` and the model's `answer`."""
    turns = [dict(m) for m in messages]
    turns.append({"role": "assistant", "content": answer.strip()})
    turns.append({"role": "user", "content": rng.choice(D.FOLLOWUPS)})
    return {"kind": "followup", "messages": turns, "topic": None, "derive": None}
