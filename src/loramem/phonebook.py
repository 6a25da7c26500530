"""PhoneBook data in the paper's format: invented names (about 15% with a title) and NNN-NNN-NNNN numbers.

Training line in the paper: ``Question: What is the phone number of {Name}? Answer: {Phone}``. Here each entry
is a Fact whose canonical question is that question, so it trains and is asked through the chat template.
Scoring follows the paper: the digits of the first phone-shaped string in the answer must match.
"""

from __future__ import annotations

import random
import re

from .types import Fact

FIRST = ["Alma", "Bram", "Cora", "Dorin", "Elsa", "Fenn", "Gita", "Hale", "Ines", "Joss", "Kira", "Lenn", "Mira", "Nils", "Opal", "Pax", "Quin", "Rhea", "Sven", "Tova", "Ulla", "Vero", "Wynn", "Xia", "Yara", "Zev", "Aric", "Bette", "Calla", "Dace", "Eira", "Fitz", "Galen", "Hedda", "Ivo", "Jory", "Kael", "Liora", "Maeve", "Noor", "Orrin", "Petra", "Rook", "Saoirse", "Tamsin", "Uriel", "Vesna", "Wren", "Yusuf", "Zinnia"]
LAST = ["Vance", "Okafor", "Lindqvist", "Marrow", "Petrakis", "Quell", "Haddad", "Ostrowski", "Brannigan", "Talvi", "Castell", "Demir", "Fairweather", "Gorski", "Holloway", "Ibarra", "Jansen", "Kowal", "Lachance", "Moravec", "Nakamura", "Oyelaran", "Prescott", "Rasmussen", "Szabo", "Thorne", "Umberfield", "Valdez", "Whitlock", "Yilmaz", "Zelenko", "Ashgrove", "Bellamy", "Corvin", "Drummond", "Eberhardt", "Falkner", "Grisham", "Huxley", "Isenberg", "Juarez", "Kilbride", "Loughran", "Mbeki", "Norquist", "Ostrander", "Pemberton", "Quintero", "Rutherford"]
TITLES = ("Dr.", "Mr.", "Ms.", "Mrs.", "Prof.")
QUESTION = "What is the phone number of {subject}?"
_PHONE = re.compile(r"\d{3}\D{0,2}\d{3}\D{0,2}\d{4}")


def phonebook(n: int, seed: int = 0) -> list[Fact]:
    """``n`` entries with unique invented names and numbers (deterministic for a seed)."""
    rng = random.Random(seed)
    names: set[str] = set()
    out: list[Fact] = []
    while len(out) < n:
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if rng.random() < 0.15:
            name = f"{rng.choice(TITLES)} {name}"
        if name in names:
            if len(names) >= len(FIRST) * len(LAST):
                raise ValueError(f"cannot invent {n} unique names")
            continue
        names.add(name)
        phone = f"{rng.randint(200, 989)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
        out.append(Fact(subject=name, relation="phone number", object=phone, question=QUESTION))
    return out


def phone_digits(text: str) -> str | None:
    """Digits of the first phone-shaped string, or None."""
    m = _PHONE.search(text)
    return re.sub(r"\D", "", m.group(0)) if m else None


def phone_correct(answer: str, expected: str) -> bool:
    return phone_digits(answer) == re.sub(r"\D", "", expected)
