"""Wh-questions from declarative sentences: the questions a user asks about a one-sentence memory.

A cloze question ("In the document: Maya is allergic to ____. What goes in the blank?") teaches a module to
fill a blank in its own sentence; a user asks "What is Maya allergic to?". ``wh_questions`` finds the shape of
a sentence (the patterns in ``SHAPES``, tried in order, the first that matches wins) and writes several
phrasings of the question the sentence answers, plus, where the relation reads both ways, the reverse question
("Whose daughter is Lily?" -> Maya). Every ``Question`` carries its phrasing, its answer (a span of the
sentence, or the name a pronoun subject stands for) and the shape's name; the phrasings of one answer form a group (``group``), forward groups first.

    "Maya's daughter is named Lily."  -> What is the name of Maya's daughter? / Who is Maya's daughter? -> Lily
                                         Whose daughter is Lily? -> Maya
    "Tom works as a nurse."           -> What does Tom do for a living? / What is Tom's job? -> nurse

A sentence that matches no shape yields nothing (cloze questions still cover it). Pronoun subjects (He, She,
They; His, Her, Their) resolve to the last named subject of the document (``document_questions``); with none
known, the sentence is skipped. Pure functions, no model: fast and deterministic, and only as good as the
patterns: a clause after the first ("... and works as a nurse") is not asked about.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    """One phrasing: ``text`` asks for ``answer`` (a span of the sentence); ``shape`` names the pattern that
    wrote it; ``reverse`` marks the other direction (asked about the object, answered with the subject)."""

    text: str
    answer: str
    shape: str
    reverse: bool = False


# --- building blocks -----------------------------------------------------------------------------------------

_WORD = r"[A-Z][a-zA-Z]*(?:['-][A-Z][a-zA-Z]*)?"  # Maya, McKay, O'Brien, Jean-Luc
_NAME = rf"(?:(?:Dr|Mr|Mrs|Ms|Prof)\.? )?{_WORD}(?: (?:van |de |von |da |del |al-)?{_WORD}){{0,3}}"
# A subject: a name, or a name's relative ("Maya's brother").
_SUBJ = rf"(?P<x>(?:the )?{_NAME}(?:'s [a-z]+(?: [a-z]+)?)?)"
_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_YEAR = r"(?:1[5-9]|20)\d{2}"
_DATE = (rf"(?:(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday),? )?"
         rf"(?:{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?(?:,? {_YEAR})?|(?:the )?\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH}"
         rf"(?:,? {_YEAR})?|{_MONTH} {_YEAR})")
_WHEN = rf"(?:{_DATE}|{_YEAR})"
_TIME_TAIL = re.compile(rf"^(?P<core>.*?),? (?P<prep>in|on|since) (?P<t>{_WHEN})$")
# Where an answer span ends: a clause break, or "and" before a verb ("lives in Oslo and works as ...").
_CUT = re.compile(r",|;| - | (?:because|since|although|but|who|which|where|while|so that|when|every|twice|once|with)\b"
                  r"| and (?=(?:is|was|has|had|works|lives|likes|loves|plays|speaks|drives|owns|[a-z]+ed)\b)")
_ART = re.compile(r"^(?:a|an|the) ", re.I)
_STOP = {"He", "She", "They", "His", "Her", "Their", "Its", "The", "A", "An", "It", "This", "That", "There", "These", "Those", "In", "On", "At", "When", "After",
         "Before", "Every", "Each", "Some", "Most", "All", "Our", "My", "Your", "We", "You", "I", "If"}
_PRONOUN = re.compile(r"^(?:(?P<subj>He|She|They)|(?P<poss>His|Her|Their)) ")
_NUMBER_WORDS = "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"

PEOPLE = {"daughter", "son", "wife", "husband", "partner", "brother", "sister", "mother", "father", "mom", "dad",
          "mum", "friend", "boss", "manager", "cousin", "uncle", "aunt", "grandmother", "grandfather", "grandson",
          "granddaughter", "niece", "nephew", "neighbour", "neighbor", "doctor", "dentist", "teacher", "roommate",
          "coach", "fiance", "fiancee", "girlfriend", "boyfriend", "colleague", "landlord", "mentor", "tutor",
          "therapist", "lawyer", "stepson", "stepdaughter", "twin", "godmother", "godfather", "child", "baby",
          "captain", "owner", "founder", "director", "chef", "mayor", "principal", "vet", "nanny", "babysitter",
          "pharmacist", "accountant", "plumber", "mechanic", "hairdresser", "barber", "trainer", "surgeon", "nurse",
          "assistant", "supervisor", "president", "host", "guide", "godson", "goddaughter", "stepmother",
          "stepfather", "classmate", "flatmate", "housemate", "bandmate", "teammate", "sponsor", "agent"}
PETS = {"cat", "dog", "kitten", "puppy", "parrot", "rabbit", "hamster", "horse", "goldfish", "tortoise", "turtle",
        "snake", "lizard", "pony", "budgie", "ferret", "pig", "goat", "canary", "fish", "iguana", "gecko"}
INSTRUMENTS = {"piano", "guitar", "violin", "cello", "drums", "flute", "trumpet", "saxophone", "clarinet", "harp",
               "bass", "ukulele", "banjo", "accordion", "oboe", "trombone", "viola", "harmonica", "organ", "bagpipes"}
SPORTS = {"tennis", "football", "soccer", "basketball", "volleyball", "badminton", "golf", "cricket", "rugby",
          "hockey", "baseball", "squash", "handball", "water polo", "table tennis", "netball", "lacrosse"}
# Past tense -> base form, for "When did X <verb> ...?" (a table, not a stemmer: a wrong base reads worse than none).
PAST = {"got": "get", "met": "meet", "bought": "buy", "began": "begin", "started": "start", "joined": "join",
        "graduated": "graduate", "opened": "open", "founded": "found", "visited": "visit", "won": "win",
        "left": "leave", "married": "marry", "adopted": "adopt", "finished": "finish", "retired": "retire",
        "ran": "run", "climbed": "climb", "broke": "break", "learned": "learn", "learnt": "learn", "sold": "sell",
        "built": "build", "wrote": "write", "published": "publish", "lost": "lose", "arrived": "arrive",
        "returned": "return", "travelled": "travel", "traveled": "travel", "passed": "pass", "launched": "launch",
        "became": "become", "took": "take", "went": "go", "flew": "fly", "completed": "complete", "earned": "earn",
        "received": "receive", "celebrated": "celebrate", "planted": "plant", "painted": "paint", "hiked": "hike",
        "swam": "swim", "sailed": "sail", "recorded": "record", "designed": "design", "discovered": "discover",
        "invented": "invent", "baked": "bake", "opened up": "open up", "qualified": "qualify", "signed": "sign"}


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _poss(x: str) -> str:
    return f"{x}'s"  # "James's": one form, so a pronoun's possessive reads back through the same patterns


def _phrase(text: str) -> str:
    """A phrase up to its first clause break, as the sentence says it (article kept)."""
    return _CUT.split(text, maxsplit=1)[0].strip().rstrip(".!")


def _span(text: str) -> str:
    """The answer part of a phrase: up to the first clause break, without a leading article."""
    return _ART.sub("", _phrase(text)).strip()


def _split_time(rest: str) -> tuple[str, str | None, str | None]:
    """``"Lisbon in 2019"`` -> ("Lisbon", "in", "2019"); no time tail -> (rest, None, None)."""
    m = _TIME_TAIL.match(rest)
    if m and m.group("core").strip():
        return m.group("core").strip(), m.group("prep"), m.group("t")
    return rest, None, None


def _is_when(text: str) -> bool:
    return re.fullmatch(rf"(?:on |in )?{_WHEN}", text.strip()) is not None


def _qs(shape: str, answer: str, texts: Sequence[str], reverse: bool = False) -> list[Question]:
    out: list[Question] = []
    for t in texts:
        if t and not any(q.text == t for q in out):
            out.append(Question(t, answer, shape, reverse))
    return out


def _when_questions(shape: str, t: str, clause: str, aux: str = "did") -> list[Question]:
    """Questions for a time: ``clause`` is what happened, as it follows ``aux`` ("did" + "Tom move to Oslo",
    "was" + "the Orrin Institute founded")."""
    second = f"In what year {aux} {clause}?" if re.fullmatch(_YEAR, t) else f"On what date {aux} {clause}?"
    return _qs(shape, t, [f"When {aux} {clause}?", second])


# --- the shapes ----------------------------------------------------------------------------------------------
# Each builder gets the match of its pattern (the sentence without its final stop) and returns its questions,
# the forward group(s) first. Subject ``x`` is a name or a name's relative.

Builder = Callable[[re.Match[str]], list[Question]]


def _married(m: re.Match[str]) -> list[Question]:
    x, y = m["x"], m["y"]
    return (_qs("married", y, [f"Who is {x} married to?", f"Who is {_poss(x)} spouse?", f"Whom did {x} marry?"])
            + _qs("married", x, [f"Who is {y} married to?", f"Who is {_poss(y)} spouse?"], reverse=True))


def _possessive(m: re.Match[str], shape: str = "possessive") -> list[Question]:
    x, r, named = m["x"], m["r"].strip(), m["named"]
    tense = "was" if m["v"] == "was" else "is"
    raw = m["y"].strip()
    head = r.split()[-1]
    if _is_when(raw):
        t = re.sub(r"^(?:on|in) ", "", raw.strip())
        return _qs(shape, t, [f"When {tense} {_poss(x)} {r}?", f"What {tense} the date of {_poss(x)} {r}?",
                              f"On what day {tense} {_poss(x)} {r}?"])
    if re.match(r"(?:in|at|on|near|behind|next to|under) ", raw):
        y = _span(re.sub(r"^(?:in|at|on|near|behind|next to|under) ", "", raw))
        return _qs(shape, y, [f"Where {tense} {_poss(x)} {r}?", f"Where {tense} {_poss(x)} {r} located?",
                              f"In which place {tense} {_poss(x)} {r}?"])
    y = _span(raw)
    if not y:
        return []
    if (head in PEOPLE or head in PETS) and not named and not y[:1].isupper():
        return []  # "Maya's brother is a pilot": not a name; the is-a shape asks it ("What is Maya's brother?")
    if head in PEOPLE or head in PETS or named:
        who = "Who" if head in PEOPLE else "What"
        fwd = [f"What {tense} the name of {_poss(x)} {r}?", f"{who} {tense} {_poss(x)} {r}?",
               f"What {tense} {_poss(x)} {r} called?"]
        if head in PETS:
            fwd[1] = f"What {tense} {_poss(x)} {r} named?"
        return _qs(shape, y, fwd) + _qs(shape, x, [f"Whose {r} {tense} {y}?", f"Who has {_a(r)} {r} named {y}?"],
                                        reverse=True)
    if r.startswith(("favourite ", "favorite ")):
        thing = r.split(" ", 1)[1]
        fav = r.split(" ", 1)[0]
        return (_qs(shape, y, [f"What {tense} {_poss(x)} {r}?", f"Which {thing} does {x} like best?",
                               f"What {thing} does {x} like the most?", f"Which {thing} is {_poss(x)} {fav}?"])
                + _qs(shape, x, [f"Whose {r} {tense} {y}?", f"Who likes {y} best?"], reverse=True))
    fwd = [f"What {tense} {_poss(x)} {r}?", f"What {tense} the {r} of {x}?", f"Which {r} does {x} have?"]
    if head == "number" and len(r.split()) > 1:
        fwd[2] = f"What number {tense} {_poss(x)} {r.rsplit(' ', 1)[0]}?"
    rev = [f"Whose {r} {tense} {_phrase(raw)}?"] if len(y.split()) <= 4 else []
    return _qs(shape, y, fwd) + _qs(shape, x, rev, reverse=True)


def _the_of(m: re.Match[str]) -> list[Question]:
    return _possessive(m, "the-r-of")


def _has_named(m: re.Match[str]) -> list[Question]:
    x, r, y = m["x"], m["r"].strip(), m["y"]
    head = r.split()[-1]
    fwd = [f"What is the name of {_poss(x)} {r}?", f"What is {_poss(x)} {r} called?", f"What is {_poss(x)} {r} named?"]
    if head in PEOPLE:
        fwd[2] = f"Who is {_poss(x)} {r}?"
    return (_qs("has-named", y, fwd)
            + _qs("has-named", x, [f"Whose {r} is named {y}?", f"Who has {_a(r)} {r} called {y}?"], reverse=True))


def _has_count(m: re.Match[str]) -> list[Question]:
    x, n, things = m["x"], m["n"], _span(m["things"])
    return _qs("has-count", n, [f"How many {things} does {x} have?", f"How many {things} has {x} got?",
                                f"What number of {things} does {x} have?"])


def _has_event(m: re.Match[str]) -> list[Question]:
    x, e, t = m["x"], m["e"].strip(), m["t"]
    return _qs("has-event", t, [f"When is {_poss(x)} {e}?", f"When does {x} have {_a(e)} {e}?",
                                f"What day is {_poss(x)} {e}?"])


def _age(m: re.Match[str]) -> list[Question]:
    x, n = m["x"], m["n"]
    return _qs("age", n, [f"How old is {x}?", f"What is {_poss(x)} age?", f"What age is {x}?"])


def _allergic(m: re.Match[str]) -> list[Question]:
    x, y = m["x"], _span(m["y"])
    return (_qs("allergic", y, [f"What is {x} allergic to?", f"What allergy does {x} have?",
                                f"What is {_poss(x)} allergy?"])
            + _qs("allergic", x, [f"Who is allergic to {y}?", f"Which person is allergic to {y}?"], reverse=True))


def _born(m: re.Match[str]) -> list[Question]:
    x, rest = m["x"], m["prep"] + " " + m["rest"]
    if _is_when(rest):
        t = re.sub(r"^(?:on|in) ", "", rest)
        if re.fullmatch(_YEAR, t):
            return _qs("born", t, [f"When was {x} born?", f"What year was {x} born in?", f"In which year was {x} born?"])
        return _qs("born", t, [f"When was {x} born?", f"What is {_poss(x)} date of birth?", f"On what date was {x} born?"])
    place, _, when = _split_time(m["rest"])
    y = _span(place)
    out = _qs("born", y, [f"Where was {x} born?", f"What is {_poss(x)} birthplace?", f"Where does {x} come from?"])
    if when:
        out += _when_questions("born", when, f"{x} born", aux="was")
    return out + _qs("born", x, [f"Who was born in {y}?"], reverse=True)


def _moved(m: re.Match[str]) -> list[Question]:
    x = m["x"]
    place, _, t = _split_time(m["rest"])
    y = _span(place)
    out = _qs("moved", y, [f"Where did {x} move to?", f"Where did {x} relocate to?", f"Which place did {x} move to?"])
    if t:
        out += _when_questions("moved", t, f"{x} move to {y}")
    return out + _qs("moved", x, [f"Who moved to {y}?"], reverse=True)


def _lives(m: re.Match[str]) -> list[Question]:
    x, prep = m["x"], m["prep"]
    place, _, _ = _split_time(m["rest"])
    y = _span(place)
    fwd = [f"Where does {x} live?", f"Where is {_poss(x)} home?", f"Where does {x} reside?"]
    if prep == "on" and re.search(r"\b(?:Street|Road|Avenue|Lane|Drive|Way|Boulevard|Row)\b", y):
        fwd[2] = f"What street does {x} live on?"
    return _qs("lives", y, fwd) + _qs("lives", x, [f"Who lives {prep} {y}?"], reverse=True)


def _from(m: re.Match[str]) -> list[Question]:
    x, y = m["x"], _span(m["y"])
    return (_qs("from", y, [f"Where is {x} from?", f"Where does {x} come from?", f"What place is {x} from?"])
            + _qs("from", x, [f"Who is from {y}?", f"Who comes from {y}?"], reverse=True))


def _works_as(m: re.Match[str]) -> list[Question]:
    x, y = m["x"], _span(m["y"])
    out = _qs("works-as", y, [f"What does {x} do for a living?", f"What is {_poss(x)} job?",
                              f"What does {x} work as?", f"What is {_poss(x)} profession?"])
    if m["z"]:
        z = _span(m["z"])
        out += _qs("works-as", z, [f"Where does {x} work?", f"Who does {x} work for?" if m["prep"] == "for"
                                   else f"Which place does {x} work at?"])
    return out + _qs("works-as", x, [f"Who works as {_a(y)} {y}?", f"Which person is {_a(y)} {y}?"], reverse=True)


def _works_at(m: re.Match[str]) -> list[Question]:
    x, prep, y = m["x"], m["prep"], _span(m["y"])
    fwd = [f"Where does {x} work?", f"Who does {x} work for?" if prep == "for" else f"Which company does {x} work at?",
           f"What is {_poss(x)} workplace?"]
    return _qs("works-at", y, fwd) + _qs("works-at", x, [f"Who works {prep} {y}?"], reverse=True)


def _studied(m: re.Match[str]) -> list[Question]:
    x, y = m["x"], _span(m["y"])
    past = m["v"] == "studied"
    aux = "did" if past else "does"
    out = _qs("studied", y, [f"What {aux} {x} study?", f"What {'was' if past else 'is'} {_poss(x)} field of study?",
                             f"What {aux} {x} major in?"])
    if m["z"]:
        z = _span(m["z"])
        out += _qs("studied", z, [f"Where {aux} {x} study?", f"Which university {aux} {x} attend?",
                                  f"At which school {aux} {x} study {y}?"])
        return out + _qs("studied", x, [f"Who studied {y} at {z}?" if past else f"Who studies {y} at {z}?"],
                         reverse=True)
    return out


def _drives(m: re.Match[str]) -> list[Question]:
    x, y = m["x"], _span(m["y"])
    return (_qs("drives", y, [f"What car does {x} drive?", f"What does {x} drive?", f"What kind of car does {x} have?"])
            + _qs("drives", x, [f"Who drives {_phrase(m['y'])}?"], reverse=True))


def _owns(m: re.Match[str]) -> list[Question]:
    x, y = m["x"], _span(m["y"])
    return (_qs("owns", y, [f"What does {x} own?", f"What is {x} the owner of?"])
            + _qs("owns", x, [f"Who owns {_phrase(m['y'])}?"], reverse=True))


def _plays(m: re.Match[str]) -> list[Question]:
    x, the, y = m["x"], m["the"] or "", _span(m["y"])
    if y.lower() in INSTRUMENTS:
        fwd = [f"What instrument does {x} play?", f"Which instrument does {x} play?", f"What does {x} play?"]
    elif y.lower() in SPORTS:
        fwd = [f"What sport does {x} play?", f"Which sport does {x} play?", f"What does {x} play?"]
    else:
        fwd = [f"What does {x} play?", f"What game does {x} play?"]
    return _qs("plays", y, fwd) + _qs("plays", x, [f"Who plays {the}{y}?"], reverse=True)


def _speaks(m: re.Match[str]) -> list[Question]:
    x, y = m["x"], _span(m["y"])
    return (_qs("speaks", y, [f"What language does {x} speak?", f"Which language does {x} speak?",
                              f"What does {x} speak?"])
            + _qs("speaks", x, [f"Who speaks {y}?"], reverse=True))


_FEEL = {  # verb (base) -> its phrasings; "{x}" is the subject
    "like": ("What does {x} like?", "What is {x} fond of?", "What does {x} enjoy?"),
    "love": ("What does {x} love?", "What does {x} really like?", "What is {x} fond of?"),
    "adore": ("What does {x} adore?", "What does {x} love?", "What is {x} fond of?"),
    "enjoy": ("What does {x} enjoy?", "What does {x} like?", "What is {x} fond of?"),
    "hate": ("What does {x} hate?", "What does {x} dislike?", "What can't {x} stand?"),
    "dislike": ("What does {x} dislike?", "What does {x} not like?", "What can't {x} stand?"),
    "prefer": ("What does {x} prefer?", "Which does {x} prefer?"),
}


def _feels(m: re.Match[str]) -> list[Question]:
    x, verb = m["x"], m["v"].rstrip("s")
    rest = m["y"]
    other = re.split(r" (?:to|over|rather than|more than) ", rest, maxsplit=1)
    y = _span(other[0])
    fwd = [t.format(x=x) for t in _FEEL[verb]]
    if verb == "prefer" and len(other) == 2:
        z = _span(other[1])
        fwd = [f"What does {x} prefer to {z}?", f"What does {x} like better than {z}?", f"What does {x} prefer?"]
    if verb == "enjoy" and y.split()[0].endswith("ing"):
        fwd[1] = f"What does {x} like doing?"
    third = {"like": "likes", "love": "loves", "adore": "adores", "enjoy": "enjoys", "hate": "hates",
             "dislike": "dislikes", "prefer": "prefers"}[verb]
    return _qs(f"feels-{verb}", y, fwd) + _qs(f"feels-{verb}", x, [f"Who {third} {y}?"], reverse=True)


def _past_when(m: re.Match[str]) -> list[Question]:
    x, past, rest = m["x"], m["v"], m["rest"].strip()
    core, _, t = _split_time(rest)
    if not t:
        return []
    core = "" if _is_when(core) else core
    clause = f"{x} {PAST[past]}" + (f" {core}" if core else "")
    out = _when_questions(f"when-{PAST[past]}", t, clause)
    if len(core.split()) >= 2 or core[:1].isupper():  # "Who founded Blue Harbor?", not "Who got married?"
        out += _qs(f"when-{PAST[past]}", x, [f"Who {past} {core}?"], reverse=True)
    return out


# Participle -> (past, base) for the passive shape ("was founded in 1962 by Petra Holloway").
PASSIVE = {"founded": ("founded", "found"), "built": ("built", "build"), "opened": ("opened", "open"),
           "established": ("established", "establish"), "created": ("created", "create"),
           "written": ("wrote", "write"), "designed": ("designed", "design"), "painted": ("painted", "paint"),
           "invented": ("invented", "invent"), "discovered": ("discovered", "discover"),
           "started": ("started", "start"), "composed": ("composed", "compose"), "launched": ("launched", "launch")}


def _passive(m: re.Match[str]) -> list[Question]:
    x, part = m["x"], m["v"]
    past, base = PASSIVE[part]
    t = re.search(rf"\b(?:in|on) ({_WHEN})\b", m["rest"])
    by = re.search(rf"\bby ({_NAME})", m["rest"])
    out: list[Question] = []
    if t:
        out += _when_questions(f"passive-{base}", t.group(1), f"{x} {part}", aux="was")
    if by:
        y = by.group(1)
        out += _qs(f"passive-{base}", y, [f"Who {past} {x}?", f"By whom was {x} {part}?"])
        out += _qs(f"passive-{base}", x, [f"What did {y} {base}?"], reverse=True)
    return out


def _is_a(m: re.Match[str]) -> list[Question]:
    x, y = m["x"], _span(re.split(r" (?:at|in|for|from|with|of) ", m["y"], maxsplit=1)[0])
    tense = m["v"]
    return (_qs("is-a", y, [f"What {tense} {x}?", f"Who {tense} {x}?"])
            + _qs("is-a", x, [f"Who {tense} {_a(y)} {y}?"], reverse=True))


def _p(pattern: str) -> re.Pattern[str]:
    return re.compile(f"^{pattern}$")


_TIME_OPT = r"(?P<rest>.+)"  # a place, maybe with a time after it ("Oslo in 2019")
# (name, pattern, builder): tried in order, the first match writes the sentence's questions.
SHAPES: tuple[tuple[str, re.Pattern[str], Builder], ...] = (
    ("married", _p(rf"{_SUBJ} (?:is|was|got|has been) married to (?P<y>{_NAME})(?: .*)?"), _married),
    ("the-r-of", _p(rf"The (?P<r>[a-z][a-z ]*?) of (?P<x>(?:the )?{_NAME}) (?P<v>is|was) (?:(?P<named>named|called) )?(?P<y>.+)"),
     _the_of),
    ("has-named", _p(rf"{_SUBJ} (?:has|have|owns?|had) (?:a|an) (?P<r>[a-z][a-z -]*?) (?:named|called) (?P<y>{_NAME})"
                     rf"(?:[ ,].*)?"), _has_named),
    ("possessive", _p(rf"(?P<x>{_NAME})'s (?P<r>[a-z][a-zA-Z -]*?) (?P<v>is|was) (?:(?P<named>named|called) )?(?P<y>.+)"),
     _possessive),
    ("age", _p(rf"{_SUBJ} (?:is|turned|just turned) (?P<n>\d{{1,3}}|{_NUMBER_WORDS})(?: years? old)?"), _age),
    ("has-count", _p(rf"{_SUBJ} (?:has|have) (?P<n>\d+|{_NUMBER_WORDS}) (?P<things>[a-z][a-z -]*)"), _has_count),
    ("has-event", _p(rf"{_SUBJ} (?:has|have) (?:a|an) (?P<e>[a-z][a-z ]*?) (?:on|in) (?P<t>{_WHEN})"), _has_event),
    ("allergic", _p(rf"{_SUBJ} (?:is|are) allergic to (?P<y>.+)"), _allergic),
    ("born", _p(rf"{_SUBJ} (?:was|were) born (?P<prep>in|on|at) (?P<rest>.+)"), _born),
    ("moved", _p(rf"{_SUBJ} (?:moved|relocated) to {_TIME_OPT}"), _moved),
    ("lives", _p(rf"{_SUBJ} (?:lives?|is living|are living) (?P<prep>in|on|at) {_TIME_OPT}"), _lives),
    ("from", _p(rf"{_SUBJ} (?:is|are|comes?) from (?P<y>[A-Z].*)"), _from),
    ("works-as", _p(rf"{_SUBJ} (?:works?|is working) as (?:a|an) (?P<y>.+?)(?: (?P<prep>at|for|in) (?P<z>.+))?"),
     _works_as),
    ("works-at", _p(rf"{_SUBJ} (?:works?|is working) (?P<prep>at|for|in) (?P<y>.+)"), _works_at),
    ("studied", _p(rf"{_SUBJ} (?P<v>studied|studies|study) (?P<y>.+?)(?: at (?P<z>.+))?"), _studied),
    ("drives", _p(rf"{_SUBJ} drives? (?P<y>(?:a|an|the) .+)"), _drives),
    ("owns", _p(rf"{_SUBJ} owns? (?P<y>(?:a|an|the) .+)"), _owns),
    ("plays", _p(rf"{_SUBJ} plays? (?P<the>the )?(?P<y>.+)"), _plays),
    ("speaks", _p(rf"{_SUBJ} speaks? (?P<y>[A-Z].*)"), _speaks),
    ("feels", _p(rf"{_SUBJ} (?P<v>likes?|loves?|adores?|enjoys?|hates?|dislikes?|prefers?) (?P<y>.+)"), _feels),
    ("passive", _p(rf"{_SUBJ} (?:was|were) (?P<v>{'|'.join(PASSIVE)})(?P<rest>(?: (?:in|on) {_WHEN}| by {_NAME})+)"),
     _passive),
    ("when", _p(rf"{_SUBJ} (?P<v>{'|'.join(sorted(PAST, key=len, reverse=True))}) (?P<rest>.+)"), _past_when),
    ("is-a", _p(rf"{_SUBJ} (?P<v>is|was) (?:a|an) (?P<y>.+)"), _is_a),
)


def _subject_ok(x: str) -> bool:
    return x.split()[0] not in _STOP


def wh_questions(sentence: str, subject: str | None = None) -> list[Question]:
    """The wh-questions one declarative sentence answers, several phrasings per answer, forward groups first.

    ``subject``: the name a pronoun subject (He/She/They, His/Her/Their) stands for; without one, a sentence
    with a pronoun subject yields nothing. A sentence that matches no shape yields nothing either."""
    said = " ".join(sentence.replace("\u2019", "'").split())
    s = said.rstrip(".! ")
    if not s or s.endswith("?"):
        return []
    s = re.sub(r"^The (?=[A-Z])", "the ", s)  # "The Orrin Institute": a name, asked as "the Orrin Institute"
    p = _PRONOUN.match(s)
    if p:
        if not subject:
            return []
        s = (subject if p["subj"] else _poss(subject)) + s[p.end() - 1:]
    for _, pattern, build in SHAPES:
        m = pattern.match(s)
        if m and _subject_ok(m["x"]):
            # Answers are spans of the sentence (a reverse answer may be the name a pronoun stands for).
            out = [q for q in build(m) if q.answer.lower() in said.lower() or (p is not None and q.answer == subject)]
            if out:
                return out
    return []


def named_subject(sentence: str) -> str | None:
    """The name a sentence is about, if it starts with one ("Maya Lind's cat ..." -> "Maya Lind")."""
    m = re.match(rf"({_NAME})(?:'s)? [a-z]", " ".join(sentence.replace("\u2019", "'").split()))
    return m.group(1) if m and _subject_ok(m.group(1)) else None


def document_questions(sentences: Sequence[str]) -> list[list[Question]]:
    """``wh_questions`` for each sentence of a document, pronouns resolved to the last named subject."""
    last: str | None = None
    out = []
    for s in sentences:
        out.append(wh_questions(s, last))
        last = named_subject(s) or last
    return out


def groups(questions: Sequence[Question]) -> list[list[Question]]:
    """The phrasings of each answer (direction and answer), in the generator's order: the first group is the
    sentence's main forward question."""
    keyed: dict[tuple[bool, str], list[Question]] = {}
    for q in questions:
        keyed.setdefault((q.reverse, q.answer), []).append(q)
    return list(keyed.values())
