"""LongDoc: generated fictional company histories (~1-2K tokens each) with recall, comprehension and inference questions.

It stands in for the paper's PaperQA/NarrativeQA: knowledge as long free text rather than facts, and questions
at three levels, with ground truth known from the generator instead of annotated by hand:

- ``recall``: the answer is stated in one sentence ("In which year was Veltrane Optics founded?");
- ``comprehension``: two sentences of the same document ("In which town was the founder of X born?": one
  sentence names the founder, another gives the founder's birthplace);
- ``inference``: across two documents ("In which province is the headquarters of the company that supplies X
  with lenses?": X's document names the supplier, the supplier's own document gives its headquarters town and
  the town's province).

A seeded ``random.Random`` invents one consistent world: provinces, towns (province, river, population,
landmark), people (birthplace, birth year, studies), and one organisation per document (founding, founder,
headquarters, executives, divisions, products, a supplier and a largest shareholder among the other
organisations, an acquired company, an event, a timeline). Names are invented from syllables and never reuse
``loramem.phonebook`` names. Each document is one organisation's article: the facts the questions need, then
further true statements about the same world until the article reaches about ``doc_tokens`` tokens (counted
with a fixed estimate so the documents do not depend on the model; ``tokenizer=`` only measures them).

Every question names the organisation it starts from (so retrieval and routing can find it), ``item_ids`` are
the documents it needs in hop order, ``group`` is the document (module) holding the final answer, and
``meta["support"]`` lists, per hop, terms that one sentence of that document states together.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loramem.phonebook import FIRST as PHONEBOOK_FIRST
from loramem.phonebook import LAST as PHONEBOOK_LAST
from loramem.types import Answer, Document

from ..metrics import text_metrics
from . import register_task
from .base import Question, TaskData

LEVELS = ("recall", "comprehension", "inference")
THIS_YEAR = 2023
MAX_DOCUMENTS = 200  # the invented names run out not far above this
#: characters per SmolLM2 token on these articles (measured: ~3.45 with the invented names); used to size them
CHARS_PER_TOKEN = 3.45

# ---------------------------------------------------------------------------------------------------------
# Invented names: a stem from syllables plus an ending that says what kind of name it is.

_STEMS = [
    "Al", "Bel", "Cor", "Dal", "Ev", "Fal", "Gar", "Hal", "Is", "Jan", "Kel", "Lor", "Mal", "Nor", "Ol", "Per",
    "Quel", "Ros", "Sel", "Tal", "Ul", "Val", "Wes", "Yor", "Zan", "Bran", "Cal", "Dor", "El", "Fen", "Gil",
    "Hel", "Ith", "Kor", "Lun", "Mor", "Ner", "Os", "Pell", "Rav", "Sar", "Tor", "Vel", "Ar", "Bor", "Ces",
    "Dun", "Ess", "Fir", "Gor", "Hes", "Kast", "Lim", "Mer", "Niv", "Orl", "Pir", "Rhun", "Sev", "Tiv", "Ves",
    "Brin", "Cad", "Dav", "Ebb", "Frey", "Grem", "Ho", "Jor", "Lys", "Marr", "Nesk", "Ovr", "Quin", "Stav",
]
_LINKS = ["", "", "a", "e", "i", "o"]  # only before an ending that starts with a consonant
_ENDINGS = {
    "first": ["a", "ia", "o", "en", "is", "ette", "ina", "an", "ira", "us", "ek", "ine", "ada", "ric", "ela", "ion"],
    "last": ["holt", "sen", "berg", "ard", "ling", "ov", "ari", "ston", "dane", "more", "ick", "ani", "ez",
             "aux", "vik", "rell", "man", "ssi", "wood", "croft"],
    "town": ["wick", "ford", "mere", "holm", "stead", "bury", "dale", "moor", "haven", "gate", "mouth", "by",
             "thorpe", "well", "ton", "brook", "field", "cross", "ley", "port"],
    "province": ["ia", "ara", "enne", "oria", "and", "mark", "avia", "esse", "una"],
    "river": ["el", "an", "is", "ra", "ume", "ent", "ask", "ow", "ine"],
    "stem": ["trane", "vex", "ora", "ion", "ant", "ix", "ara", "eon", "ace", "ium", "ova", "ane"],
    "product": ["ix", "on", "ara", "eo", "ex", "ium", "ta", "ya", "or"],
}
_FORBIDDEN = {n.lower() for n in PHONEBOOK_FIRST + PHONEBOOK_LAST}


class _Namer:
    """Unique invented words (no word twice in one world, none from the phonebook)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set(_FORBIDDEN)

    def __call__(self, kind: str) -> str:
        for _ in range(5000):
            stem, ending = self.rng.choice(_STEMS), self.rng.choice(_ENDINGS[kind])
            link = "" if ending[0] in "aeiouy" else self.rng.choice(_LINKS)
            word = (stem + link + ending).capitalize()
            if word.lower() not in self.used and not re.search(r"(.)\1\1|[aeiou]{3}|ii|uu", word.lower()):
                self.used.add(word.lower())
                return word
        raise ValueError(f"longdoc: ran out of invented {kind} names (world too large)")


# ---------------------------------------------------------------------------------------------------------
# The sectors an organisation can be in: its name ending, what it buys, what it makes, its divisions.

@dataclass(frozen=True)
class Sector:
    desc: str
    suffixes: tuple[str, ...]
    components: tuple[str, ...]
    products: tuple[str, ...]
    divisions: tuple[str, ...]
    goods: tuple[str, ...]  # what an acquired firm makes
    sells: tuple[str, ...]  # what it supplies to other organisations


SECTORS = [
    Sector("optics", ("Optics", "Optical Works", "Lenscraft"), ("glass blanks", "lens coatings", "brass fittings"),
           ("camera lens", "field microscope", "surveying telescope", "range finder", "projector lens"),
           ("Precision Glass", "Survey Instruments", "Imaging", "Coatings"), ("optical filters", "spectacle frames"),
           ("inspection lenses", "magnifying glasses", "safety goggles")),
    Sector("textiles", ("Textiles", "Weaving Company", "Mills"), ("raw wool", "cotton yarn", "natural dyes"),
           ("wool blanket", "storm coat", "canvas sail", "upholstery cloth", "felt boot"),
           ("Woollens", "Technical Fabrics", "Dyeworks", "Outerwear"), ("buttons", "sewing thread"),
           ("work uniforms", "canvas covers", "filter cloth")),
    Sector("shipbuilding", ("Shipyards", "Marine", "Boatworks"), ("steel plate", "marine engines", "oak timber"),
           ("river ferry", "fishing trawler", "harbour tug", "cargo barge", "rescue launch"),
           ("Commercial Hulls", "Engines", "Repairs", "Small Craft"), ("anchors", "ship propellers"),
           ("steel castings", "river transport", "welded frames")),
    Sector("food", ("Foods", "Preserves", "Bakeries"), ("rye flour", "sugar beet", "sea salt"),
           ("rye crispbread", "plum preserve", "smoked cheese", "barley biscuit", "mustard"),
           ("Bakery", "Dairy", "Preserves", "Export"), ("wooden crates", "glass jars"),
           ("canteen meals", "packed lunches", "vegetable oil")),
    Sector("instruments", ("Instruments", "Precision", "Clockworks"), ("spring steel", "quartz crystals",
           "enamel dials"), ("pocket chronometer", "barometer", "tide clock", "pressure gauge", "metronome"),
           ("Timekeeping", "Gauges", "Repairs", "Laboratory"), ("watch straps", "clock cases"),
           ("pressure gauges", "precision springs", "test meters")),
    Sector("ceramics", ("Ceramics", "Potteries", "Porcelain"), ("kaolin clay", "glaze pigments", "kiln bricks"),
           ("stoneware jug", "porcelain dinner set", "floor tile", "garden urn", "insulator"),
           ("Tableware", "Tiles", "Technical Ceramics", "Studio"), ("kiln furniture", "decal transfers"),
           ("ceramic insulators", "firebricks", "grinding stones")),
    Sector("bicycle", ("Cycles", "Cycleworks", "Velocipede Company"), ("steel tubing", "rubber tyres",
           "leather saddles"), ("touring bicycle", "delivery tricycle", "folding bicycle", "racing frame",
           "child's bicycle"), ("Frames", "Components", "Touring", "Cargo"), ("bicycle bells", "chain guards"),
           ("delivery tricycles", "steel tubing", "roller chains")),
    Sector("paper", ("Paper Company", "Papermills", "Press"), ("wood pulp", "linen rags", "printing ink"),
           ("writing paper", "map paper", "ledger book", "folding carton", "watercolour pad"),
           ("Fine Papers", "Packaging", "Printing", "Stationery"), ("envelopes", "paper tubes"),
           ("packaging cartons", "printed labels", "instruction booklets")),
]

ROLES_BEFORE = ["an engineer", "a sales manager", "a foreman", "a draughtsman", "an apprentice", "a buyer"]
FIELDS = ["engineering", "chemistry", "economics", "physics", "law", "design", "mathematics", "accounting"]
SCHOOL_KINDS = ["Institute of Technology", "Polytechnic", "College of Commerce", "Academy of Arts", "University"]
HOBBIES = ["sailor", "chess player", "beekeeper", "choir singer", "cyclist", "hill walker", "photographer",
           "amateur astronomer", "fly fisher", "gardener"]
LANDMARKS = ["stone bridge", "clock tower", "covered market", "old lighthouse", "botanical garden", "abbey ruins",
             "salt museum", "rope walk", "town hall with a copper roof", "steam railway"]
PROVINCE_FEATURES = ["apple orchards", "limestone cliffs", "salt marshes", "pine forests", "horse fairs",
                     "hill vineyards", "peat bogs", "flint churches", "tidal islands", "sheep pastures"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
EVENT_KINDS = ["Forum", "Trade Fair", "Summer Exhibition", "Design Congress", "Craft Week"]
PRIZE_KINDS = ["Prize", "Medal", "Award"]


# ---------------------------------------------------------------------------------------------------------
# The world.

@dataclass
class Town:
    name: str
    province: str
    river: str
    population: int
    landmark: str
    market_day: str


@dataclass
class Person:
    first: str
    last: str
    born: int
    birthplace: str
    field_of_study: str
    school: str
    hobby: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass
class Division:
    name: str
    head: Person
    since: int


@dataclass
class Product:
    name: str
    kind: str
    year: int
    division: str
    plant: str


@dataclass
class Org:
    index: int
    name: str
    sector: Sector
    founded: int
    founded_in: str
    founder: Person
    founder_role_before: str
    founder_years_before: int
    former_firm: str  # where the founder worked before (a firm with no article of its own)
    hq: str
    ceo: Person
    ceo_since: int
    engineer: Person
    cfo: Person
    chair: Person
    employees: int
    divisions: list[Division]
    products: list[Product]
    component: str
    supply_since: int
    acquired: str
    acquired_year: int
    acquired_town: str
    acquired_goods: str
    acquired_staff: int
    event: str
    event_year: int
    event_town: str
    prize: str
    prize_year: int
    supplier: int = -1  # index of the organisation that supplies ``component``
    shareholder: int = -1  # index of the organisation that is the largest shareholder
    shareholder_since: int = 0
    stake: int = 0  # per cent
    people: list[Person] = field(default_factory=list)

    @property
    def doc(self) -> str:
        return f"doc{self.index:02d}"


@dataclass
class World:
    provinces: dict[str, str]  # province -> what it is known for
    towns: dict[str, Town]
    orgs: list[Org]


@dataclass
class _People:
    """Invents people: first names and schools are shared, surnames are unique (so full names are)."""

    rng: random.Random
    namer: _Namer
    towns: list[Town]
    firsts: list[str]
    schools: list[str]

    def __call__(self, born: int) -> Person:
        first, last = self.rng.choice(self.firsts), self.namer("last")
        while last[:3] == first[:3]:  # not "Perina Perard"
            last = self.namer("last")
        return Person(first, last, born, self.rng.choice(self.towns).name, self.rng.choice(FIELDS),
                      self.rng.choice(self.schools), self.rng.choice(HOBBIES))


def make_world(n: int, rng: random.Random) -> World:
    namer = _Namer(rng)
    n_provinces = max(3, n // 3 + 2)
    provinces = {namer("province"): rng.choice(PROVINCE_FEATURES) for _ in range(n_provinces)}
    rivers = [namer("river") for _ in range(max(4, n // 2 + 3))]
    towns = [
        Town(namer("town"), rng.choice(list(provinces)), rng.choice(rivers), rng.randrange(4, 300) * 100,
             rng.choice(LANDMARKS), rng.choice(WEEKDAYS))
        for _ in range(max(10, 2 * n + 6))
    ]
    person = _People(rng, namer, towns, [namer("first") for _ in range(min(600, 6 * n + 20))],
                     [f"{namer('stem')} {rng.choice(SCHOOL_KINDS)}" for _ in range(min(100, n // 2 + 5))])
    hq_towns = rng.sample(towns, n)  # distinct: there are more towns than organisations
    founding_years = rng.sample(range(1920, 1996), n) if n <= 76 else [rng.randrange(1920, 1996) for _ in range(n)]
    sectors = [SECTORS[i % len(SECTORS)] for i in range(n)]
    rng.shuffle(sectors)
    orgs: list[Org] = []
    for i in range(n):
        sector, founded, hq = sectors[i], founding_years[i], hq_towns[i].name
        name = f"{namer('stem')} {rng.choice(sector.suffixes)}"
        founder = person(founded - rng.randrange(24, 42))
        ceo = person(rng.randrange(1950, 1984))
        ceo_since = rng.randrange(max(founded + 5, ceo.born + 32), THIS_YEAR)
        engineer = person(rng.randrange(1955, 1990))
        cfo = person(rng.randrange(1955, 1990))
        chair = person(rng.randrange(1945, 1975))
        div_names = rng.sample(sector.divisions, rng.choice((2, 3)))
        divisions = [Division(d, person(rng.randrange(1955, 1992)), 0) for d in div_names]
        for d in divisions:
            d.since = rng.randrange(max(founded + 1, d.head.born + 28), THIS_YEAR + 1)
        kinds = rng.sample(sector.products, 3)
        years = sorted(rng.sample(range(founded + 1, THIS_YEAR), 3))
        products = [
            Product(f"{namer('product')} {rng.choice(['', str(rng.randrange(2, 90) * 10)])}".strip(), kind, year,
                    divisions[j % len(divisions)].name, rng.choice(towns).name)
            for j, (kind, year) in enumerate(zip(kinds, years))
        ]
        orgs.append(Org(
            index=i, name=name, sector=sector, founded=founded,
            founded_in=rng.choice([t.name for t in towns if t.name != founder.birthplace]),  # two sentences
            founder=founder, founder_role_before=rng.choice(ROLES_BEFORE), founder_years_before=rng.randrange(2, 12),
            former_firm=f"{namer('last')} {rng.choice(['& Sons', 'Brothers', 'Trading House', 'and Partners'])}",
            hq=hq, ceo=ceo, ceo_since=ceo_since, engineer=engineer, cfo=cfo, chair=chair,
            employees=rng.randrange(12, 900) * 10, divisions=divisions, products=products,
            component="", supply_since=0,
            acquired=f"{namer('last')} {rng.choice(['Brothers', 'Works', '& Daughters', 'Workshop', 'Company'])}",
            acquired_year=rng.randrange(founded + 3, THIS_YEAR), acquired_town=rng.choice(towns).name,
            acquired_goods=rng.choice(sector.goods), acquired_staff=rng.randrange(2, 40) * 10,
            event=f"{namer('stem')} {rng.choice(EVENT_KINDS)}", event_year=rng.randrange(founded + 2, THIS_YEAR),
            event_town=rng.choice(towns).name, prize=f"{namer('stem')} {rng.choice(PRIZE_KINDS)}",
            prize_year=rng.randrange(founded + 1, THIS_YEAR),
        ))
        orgs[-1].people = [founder, ceo, engineer, cfo, chair, *(d.head for d in divisions)]
    # Supplier: a random cycle (nobody supplies itself; each organisation has exactly one supplier).
    order = list(range(n))
    rng.shuffle(order)
    for a, b in zip(order, order[1:] + order[:1]):
        orgs[a].supplier = b
        orgs[a].component = rng.choice(orgs[b].sector.sells)
        orgs[a].supply_since = rng.randrange(max(orgs[a].founded, orgs[b].founded) + 1, THIS_YEAR)
    for org in orgs:
        org.shareholder = rng.choice([j for j in range(n) if j != org.index])
        org.shareholder_since = rng.randrange(max(org.founded, orgs[org.shareholder].founded) + 1, THIS_YEAR)
        org.stake = rng.randrange(12, 49)
    return World(provinces, {t.name: t for t in towns}, orgs)


# ---------------------------------------------------------------------------------------------------------
# Writing one organisation's article.

def _pick(rng: random.Random, templates: list[str], **values: Any) -> str:
    return rng.choice(templates).format(**values)


def _num(n: int) -> str:
    return f"{n:,}"


def _a(phrase: str) -> str:
    return f"{'an' if phrase[0].lower() in 'aeiou' else 'a'} {phrase}"


class _Article:
    """Sections of sentences, each with an order key; each sentence is kept whole so questions can point at it."""

    def __init__(self) -> None:
        self.sections: dict[str, list[tuple[float, str]]] = {}

    def add(self, section: str, sentence: str, order: float = 0) -> None:
        self.sections.setdefault(section, []).append((order, sentence))

    def chars(self) -> int:
        return sum(len(s) + 1 for items in self.sections.values() for _, s in items)

    def render(self, title: str) -> str:
        parts = [title]
        for section, items in self.sections.items():
            body = " ".join(s for _, s in sorted(items, key=lambda x: x[0]))
            parts.append(body if section == INTRO else f"{section}\n{body}")
        return "\n\n".join(parts)


INTRO, HISTORY, PEOPLE, PRODUCTS, SUPPLY, PLACES = (
    "intro", "History", "People", "Divisions and products", "Suppliers and owners", "Places")
Filler = tuple[str, float, str]  # section, order key, sentence


def _born(rng: random.Random, p: Person) -> str:
    """The birth sentence: names the person, the town and the year, never the person's role."""
    return _pick(rng, [
        "{name} was born in {town} in {year}.",
        "{name} was born in {year} in the town of {town}.",
        "Born in {town} in {year}, {name} went to school there.",
    ], name=p.name, town=p.birthplace, year=p.born)


def _person_extras(rng: random.Random, p: Person) -> list[str]:
    return [
        _pick(rng, ["{last} studied {f} at the {s}.", "{last} holds a degree in {f} from the {s}.",
                    "After school, {last} read {f} at the {s}."], last=p.last, f=p.field_of_study, s=p.school),
        _pick(rng, ["Outside work, {last} is a keen {h}.", "Colleagues describe {last} as a dedicated {h}.",
                    "{last} is known locally as {a}."], last=p.last, h=p.hobby, a=_a(p.hobby)),
    ]


def _town_core(rng: random.Random, t: Town) -> str:
    """The town sentence: province and river, nothing about any organisation."""
    return _pick(rng, [
        "{t} lies in the province of {p}, on the river {r}.",
        "{t} is a town in the province of {p}; the river {r} runs through it.",
        "The town of {t}, in the province of {p}, stands on the river {r}.",
    ], t=t.name, p=t.province, r=t.river)


def write_article(org: Org, world: World, rng: random.Random, doc_tokens: int) -> str:
    """The article for one organisation: the question-bearing sentences, then true filler up to size."""
    art = _Article()
    x, s = org.name, org.sector
    supplier, shareholder = world.orgs[org.supplier], world.orgs[org.shareholder]

    art.add(INTRO, _pick(rng, [
        "{x} is {a} company with its headquarters in {hq}.",
        "{x}, {a} company, has its headquarters in {hq}.",
        "The {d} company {x} is headquartered in {hq}.",
    ], x=x, a=_a(s.desc), d=s.desc, hq=org.hq))
    art.add(INTRO, _pick(rng, [
        "{x} employs {n} people.", "Today {x} employs {n} people.", "{x} employs {n} people in total.",
    ], x=x, n=_num(org.employees)))
    art.add(INTRO, _pick(rng, [
        "Its best-known products are the {a} and the {b}.", "It is best known for the {a} and the {b}.",
    ], a=org.products[0].name, b=org.products[1].name))

    art.add(HISTORY, _pick(rng, [
        "{x} was founded in {y} in {t} by {f}.", "{f} founded {x} in {t} in {y}.",
        "{x} was established by {f} in {y}, in the town of {t}.",
    ], x=x, y=org.founded, t=org.founded_in, f=org.founder.name), 0)
    art.add(HISTORY, _pick(rng, [
        "Before starting {x}, {f} spent {k} years as {r} at {e}.",
        "{f} had previously worked at {e} for {k} years as {r}, before founding {x}.",
    ], x=x, f=org.founder.name, k=org.founder_years_before, r=org.founder_role_before, e=org.former_firm), 1)
    art.add(HISTORY, _born(rng, org.founder), 2)
    art.add(HISTORY, _pick(rng, [
        "In {y}, {x} acquired {a}, a maker of {g}.", "{x} bought {a}, a maker of {g}, in {y}.",
        "In {y}, {x} took over {a}, which makes {g}.",
    ], x=x, y=org.acquired_year, a=org.acquired, g=org.acquired_goods), org.acquired_year)
    art.add(HISTORY, _pick(rng, [
        "{a} is based in {t}.", "{a} remains based in {t}, where it employs {k} people.",
        "{a} is still based in {t}, as it was before the sale.",
    ], a=org.acquired, t=org.acquired_town, k=org.acquired_staff), org.acquired_year)
    art.add(HISTORY, _pick(rng, [
        "In {y}, {x} hosted the first {e} in {t}.", "{x} hosted the first {e} in {t} in {y}.",
    ], x=x, y=org.event_year, e=org.event, t=org.event_town), org.event_year)

    art.add(PEOPLE, _pick(rng, [
        "{c} has been chief executive of {x} since {y}.", "Since {y}, {x} has been led by chief executive {c}.",
        "The chief executive of {x} is {c}, who took the post in {y}.",
    ], x=x, c=org.ceo.name, y=org.ceo_since), 1)
    art.add(PEOPLE, _born(rng, org.ceo), 1.05)
    art.add(PEOPLE, _pick(rng, [
        "The chief engineer of {x} is {e}.", "{e} is chief engineer at {x}.",
    ], x=x, e=org.engineer.name), 2)
    art.add(PEOPLE, _born(rng, org.engineer), 2.05)
    art.add(PEOPLE, _pick(rng, [
        "{c} serves as chief financial officer of {x}.",
        "The finances of {x} are run by {c}, its chief financial officer.",
    ], x=x, c=org.cfo.name), 3)
    art.add(PEOPLE, _pick(rng, [
        "{c} chairs the board of {x}.", "The board of {x} is chaired by {c}.",
    ], x=x, c=org.chair.name), 4)

    art.add(PRODUCTS, f"{x} is organised into {len(org.divisions)} divisions.", 0)
    for j, d in enumerate(org.divisions):
        art.add(PRODUCTS, _pick(rng, [
            "The {d} division is led by {h}.", "{h} heads the {d} division.",
            "{h} has run the {d} division since {y}.",
        ], d=d.name, h=d.head.name, y=d.since), 1 + 10 * j)
    for j, p in enumerate(org.products):
        art.add(PRODUCTS, _pick(rng, [
            "{x} launched the {p}, {k}, in {y}; it is made by the {d} division.",
            "In {y}, {x} launched the {p}, {k} made by the {d} division.",
            "The {p} is {k} that {x} launched in {y}; the {d} division makes it.",
        ], x=x, p=p.name, k=_a(p.kind), y=p.year, d=p.division), 5 + 10 * j)

    art.add(SUPPLY, _pick(rng, [
        "{x} buys its {c} from {s}.", "{x} sources its {c} from {s}.",
        "{s} has supplied {x} with {c} since {y}.",
    ], x=x, c=org.component, s=supplier.name, y=org.supply_since), 0)
    art.add(SUPPLY, _pick(rng, [
        "Since {y}, the largest shareholder in {x} has been {s}, which holds {k} per cent of its shares.",
        "{s} has been the largest shareholder in {x} since {y}, with {k} per cent of the shares.",
        "{s} owns {k} per cent of {x}, which makes it the largest shareholder.",
    ], x=x, s=shareholder.name, y=org.shareholder_since, k=org.stake), 2)
    materials = rng.sample(s.components, 2)
    art.add(SUPPLY, _pick(rng, [
        "Its {c} and {d} come from small firms around {t}.", "Smaller firms near {t} provide its {c} and {d}.",
    ], c=materials[0], d=materials[1], t=org.hq), 1)

    # The headquarters and founding towns are always described; the other towns named are filler.
    described = list(dict.fromkeys([org.hq, org.founded_in]))
    for k, t in enumerate(described):
        art.add(PLACES, _town_core(rng, world.towns[t]), 10 * k)

    target_chars = doc_tokens * CHARS_PER_TOKEN - len(x) - 80  # less the title and headings
    used_chars = art.chars()
    for section, order, sentence in _fillers(org, world, rng, described):
        if used_chars >= target_chars:
            break
        art.add(section, sentence, order)
        used_chars += len(sentence) + 1
    return art.render(x)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _fillers(org: Org, world: World, rng: random.Random, described: list[str]) -> list[Filler]:
    """True sentences that no question depends on, in a seeded shuffled order of use."""
    x = org.name
    towns, provinces = list(world.towns), list(world.provinces)
    out: list[Filler] = []
    # People: each placed right after the sentence that introduces the person.
    placed = [(HISTORY, 2.0, org.founder), (PEOPLE, 1.0, org.ceo), (PEOPLE, 2.0, org.engineer),
              (PEOPLE, 3.0, org.cfo), (PEOPLE, 4.0, org.chair)]
    placed += [(PRODUCTS, 1.0 + 10 * j, d.head) for j, d in enumerate(org.divisions)]
    for section, order, person in placed:
        if all(person is not core for core in (org.founder, org.ceo, org.engineer)):  # their birth is core
            out.append((section, order + 0.05, _born(rng, person)))
        for k, sentence in enumerate(_person_extras(rng, person)):
            out.append((section, order + 0.1 * (k + 1), sentence))
    for j, product in enumerate(org.products):
        out.append((PRODUCTS, 5.5 + 10 * j, _pick(rng, [
            "It is assembled at the company's plant in {t}.", "Production takes place at the plant in {t}.",
        ], t=product.plant)))
    # Timeline: at most one event a year, numbers growing with time.
    span = list(range(org.founded + 1, THIS_YEAR))
    years = sorted(rng.sample(span, min(len(span), 45)))
    staff = sorted(rng.randrange(1, max(2, org.employees // 10)) * 10 for _ in years)
    revenue = sorted(rng.randrange(1, 4000) for _ in years)
    def town() -> Town:
        return world.towns[rng.choice(towns)]

    def it() -> str:  # the company's name, or "the company" so the article does not repeat it every line
        return rng.choice([x, "the company"])

    repeatable: list[Callable[[int, int], str]] = [
        lambda y, k: f"In {y}, {it()} opened a sales office in {town().name}.",
        lambda y, k: f"By {y}, the workforce of {it()} had grown to {_num(staff[k])}.",
        lambda y, k: f"Revenue in {y} came to {revenue[k]} million crowns.",
        lambda y, k: f"{y} saw the start of an apprentice programme in {town().name}.",
        lambda y, k: f"A fire in {y} closed one of the workshops for {rng.randrange(2, 12)} weeks.",
        lambda y, k: f"In {y}, {it()} signed a ten-year lease on offices in {town().name}.",
        lambda y, k: f"In {y}, {it()} began exporting to the province of {rng.choice(provinces)}.",
        lambda y, k: f"A strike in {y} halted production for {rng.randrange(3, 20)} days.",
        lambda y, k: f"{x} celebrated its {_ordinal(y - org.founded)} anniversary in {y} with an open day for families.",
        lambda y, k: (lambda t: f"Floods on the river {t.river} in {y} damaged a storehouse in {t.name}.")(town()),
        lambda y, k: (lambda t: f"In {y}, {it()} paid for the repair of the {t.landmark} in {t.name}.")(town()),
    ]
    once: list[Callable[[int, int], str]] = [
        lambda y, k: f"In {y}, the company moved its main warehouse to a larger site near {town().name}.",
        lambda y, k: f"In {y}, the company opened a staff canteen and a small library.",
        lambda y, k: f"In {y}, {x} replaced its old steam boilers with electric furnaces.",
        lambda y, k: f"{x} printed its first illustrated catalogue in {y}.",
        lambda y, k: f"In {y}, the staff of {x} voted to form a works council.",
        lambda y, k: f"In {y}, {x} introduced a five-day working week.",
        lambda y, k: f"A testing laboratory opened at the main works in {y}.",
    ]
    deck: list[Callable[[int, int], str]] = []
    for k, y in enumerate(years):
        if y in (org.acquired_year, org.event_year, org.prize_year):
            continue
        if not deck:  # deal every sentence kind once before any repeats
            deck = repeatable + once
            once = []
            rng.shuffle(deck)
        out.append((HISTORY, y, deck.pop()(y, k)))
    out.append((HISTORY, org.prize_year,
                f"In {org.prize_year}, {x} received the {org.prize} for its {org.products[2].kind}."))
    # Places: every town the article names, then the provinces.
    named = [org.acquired_town, org.event_town, *(p.birthplace for p in org.people), *(p.plant for p in org.products)]
    all_towns = list(dict.fromkeys(described + named))
    for k, name in enumerate(all_towns):
        t = world.towns[name]
        if name not in described:
            out.append((PLACES, 10 * k, _town_core(rng, t)))
        out.append((PLACES, 10 * k + 1, _pick(rng, [
            "{t} has about {n} inhabitants.", "About {n} people live in {t}.",
        ], t=t.name, n=_num(t.population))))
        out.append((PLACES, 10 * k + 2, _pick(rng, [
            "Visitors to {t} come to see its {l}, and the weekly market is held on {d}s.",
            "{t} is known for its {l}; its market day is {d}.",
        ], t=t.name, l=t.landmark, d=t.market_day)))
    for k, prov in enumerate(dict.fromkeys(world.towns[t].province for t in all_towns)):
        out.append((PLACES, 10_000 + k, f"The province of {prov} is known for its {world.provinces[prov]}."))
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------------------------------------------------
# Questions: templates per level. Each returns (question, answer, support) where support is a list of
# (org index of the document, terms that one sentence of it states together), in hop order.

Support = list[tuple[int, list[str]]]
QTemplate = Callable[[Org, World], tuple[str, str, Support]]


def _recall_templates() -> dict[str, QTemplate]:
    def founded(o: Org, w: World) -> tuple[str, str, Support]:
        return f"In which year was {o.name} founded?", str(o.founded), [(o.index, [o.name, str(o.founded)])]

    def founder(o: Org, w: World) -> tuple[str, str, Support]:
        return f"Who founded {o.name}?", o.founder.name, [(o.index, [o.name, o.founder.name])]

    def hq(o: Org, w: World) -> tuple[str, str, Support]:
        return f"In which town does {o.name} have its headquarters?", o.hq, [(o.index, [o.name, o.hq])]

    def ceo(o: Org, w: World) -> tuple[str, str, Support]:
        return f"Who is the chief executive of {o.name}?", o.ceo.name, [(o.index, [o.name, o.ceo.name])]

    def employees(o: Org, w: World) -> tuple[str, str, Support]:
        n = _num(o.employees)
        return f"How many people does {o.name} employ?", n, [(o.index, [o.name, n])]

    def acquired(o: Org, w: World) -> tuple[str, str, Support]:
        y = str(o.acquired_year)
        return f"In which year did {o.name} acquire {o.acquired}?", y, [(o.index, [o.name, o.acquired, y])]

    def launched(o: Org, w: World) -> tuple[str, str, Support]:
        p = o.products[2]
        return f"In which year did {o.name} launch the {p.name}?", str(p.year), [(o.index, [p.name, str(p.year)])]

    def event(o: Org, w: World) -> tuple[str, str, Support]:
        return (f"In which town did {o.name} host the first {o.event}?", o.event_town,
                [(o.index, [o.name, o.event, o.event_town])])

    def chair(o: Org, w: World) -> tuple[str, str, Support]:
        return f"Who chairs the board of {o.name}?", o.chair.name, [(o.index, [o.name, o.chair.name])]

    def component(o: Org, w: World) -> tuple[str, str, Support]:
        s = w.orgs[o.supplier].name
        return f"Which company supplies {o.name} with {o.component}?", s, [(o.index, [o.name, o.component, s])]

    return {f.__name__: f for f in (founded, founder, hq, ceo, employees, acquired, launched, event, chair, component)}


def _comprehension_templates() -> dict[str, QTemplate]:
    def founder_birthplace(o: Org, w: World) -> tuple[str, str, Support]:
        f = o.founder
        return (f"In which town was the founder of {o.name} born?", f.birthplace,
                [(o.index, [o.name, f.name]), (o.index, [f.name, f.birthplace])])

    def hq_province(o: Org, w: World) -> tuple[str, str, Support]:
        p = w.towns[o.hq].province
        return (f"In which province is the town where {o.name} has its headquarters?", p,
                [(o.index, [o.name, o.hq]), (o.index, [o.hq, p])])

    def founding_river(o: Org, w: World) -> tuple[str, str, Support]:
        r = w.towns[o.founded_in].river
        return (f"Which river runs through the town where {o.name} was founded?", r,
                [(o.index, [o.name, o.founded_in]), (o.index, [o.founded_in, r])])

    def ceo_born(o: Org, w: World) -> tuple[str, str, Support]:
        c = o.ceo
        return (f"In which year was the chief executive of {o.name} born?", str(c.born),
                [(o.index, [o.name, c.name]), (o.index, [c.name, str(c.born)])])

    def product_division_head(o: Org, w: World) -> tuple[str, str, Support]:
        p = o.products[1]
        head = next(d.head.name for d in o.divisions if d.name == p.division)
        return (f"Who heads the division of {o.name} that makes the {p.name}?", head,
                [(o.index, [p.name, p.division]), (o.index, [p.division, head])])

    def acquired_town(o: Org, w: World) -> tuple[str, str, Support]:
        y = str(o.acquired_year)
        return (f"In which town is the company that {o.name} acquired in {y} based?", o.acquired_town,
                [(o.index, [o.name, y, o.acquired]), (o.index, [o.acquired, o.acquired_town])])

    def engineer_birthplace(o: Org, w: World) -> tuple[str, str, Support]:
        e = o.engineer
        return (f"In which town was the chief engineer of {o.name} born?", e.birthplace,
                [(o.index, [o.name, e.name]), (o.index, [e.name, e.birthplace])])

    return {f.__name__: f for f in (founder_birthplace, hq_province, founding_river, ceo_born, product_division_head,
                                    acquired_town, engineer_birthplace)}


def _inference_templates() -> dict[str, QTemplate]:
    def supplier_hq_province(o: Org, w: World) -> tuple[str, str, Support]:
        s = w.orgs[o.supplier]
        p = w.towns[s.hq].province
        return (f"In which province is the headquarters of the company that supplies {o.name} with {o.component}?",
                p, [(o.index, [o.name, o.component, s.name]), (s.index, [s.name, s.hq]), (s.index, [s.hq, p])])

    def supplier_ceo(o: Org, w: World) -> tuple[str, str, Support]:
        s = w.orgs[o.supplier]
        return (f"Who is the chief executive of the company that supplies {o.name} with {o.component}?",
                s.ceo.name, [(o.index, [o.name, o.component, s.name]), (s.index, [s.name, s.ceo.name])])

    def supplier_founded(o: Org, w: World) -> tuple[str, str, Support]:
        s = w.orgs[o.supplier]
        return (f"In which year was the company that supplies {o.name} with {o.component} founded?",
                str(s.founded), [(o.index, [o.name, o.component, s.name]), (s.index, [s.name, str(s.founded)])])

    def supplier_founder_birthplace(o: Org, w: World) -> tuple[str, str, Support]:
        s = w.orgs[o.supplier]
        return (f"In which town was the founder of the company that supplies {o.name} with {o.component} born?",
                s.founder.birthplace, [(o.index, [o.name, o.component, s.name]), (s.index, [s.name, s.founder.name]),
                                       (s.index, [s.founder.name, s.founder.birthplace])])

    def supplier_hq_river(o: Org, w: World) -> tuple[str, str, Support]:
        s = w.orgs[o.supplier]
        r = w.towns[s.hq].river
        return (f"Which river runs through the town where the company that supplies {o.name} with {o.component} "
                "has its headquarters?", r,
                [(o.index, [o.name, o.component, s.name]), (s.index, [s.name, s.hq]), (s.index, [s.hq, r])])

    def shareholder_founder(o: Org, w: World) -> tuple[str, str, Support]:
        h = w.orgs[o.shareholder]
        return (f"Who founded the company that is the largest shareholder in {o.name}?", h.founder.name,
                [(o.index, [o.name, h.name, "largest shareholder"]), (h.index, [h.name, h.founder.name])])

    def shareholder_hq(o: Org, w: World) -> tuple[str, str, Support]:
        h = w.orgs[o.shareholder]
        return (f"In which town does the largest shareholder in {o.name} have its headquarters?", h.hq,
                [(o.index, [o.name, h.name, "largest shareholder"]), (h.index, [h.name, h.hq])])

    return {f.__name__: f for f in (supplier_hq_province, supplier_ceo, supplier_founded, supplier_founder_birthplace,
                                    supplier_hq_river, shareholder_founder, shareholder_hq)}


TEMPLATES: dict[str, dict[str, QTemplate]] = {
    "recall": _recall_templates(),
    "comprehension": _comprehension_templates(),
    "inference": _inference_templates(),
}
MAX_PER_LEVEL = min(len(t) for t in TEMPLATES.values())


# ---------------------------------------------------------------------------------------------------------
# The task.

class LongDocTask:
    name = "longdoc"
    primary = "rougeL"

    def build(self, size: int, seed: int = 0, *, doc_tokens: int = 1500, questions_per_level: int = 4,
              tokenizer: Any = None, **options: Any) -> TaskData:
        """``size`` documents (>= 2, inference needs a second one), each of about ``doc_tokens`` tokens, with
        ``questions_per_level`` questions per document at each level (recall, comprehension, inference).

        ``tokenizer`` (optional) only measures the documents into ``meta["tokens_per_doc"]``.
        """
        if not 2 <= size <= MAX_DOCUMENTS:
            raise ValueError(f"longdoc: expected size in [2, {MAX_DOCUMENTS}] documents (inference questions cross "
                             f"documents), got {size}")
        if doc_tokens < 1:
            raise ValueError(f"longdoc: expected doc_tokens >= 1, got {doc_tokens}")
        if not 1 <= questions_per_level <= MAX_PER_LEVEL:
            raise ValueError(f"longdoc: questions_per_level must be in [1, {MAX_PER_LEVEL}], got {questions_per_level}")
        rng = random.Random(f"longdoc:{seed}")
        world = make_world(size, rng)
        docs = [
            Document(text=write_article(o, world, random.Random(f"longdoc:{seed}:{o.doc}"), doc_tokens), title=o.name,
                     metadata={"doc": o.doc, "subject": o.name})
            for o in world.orgs
        ]
        questions: list[Question] = []
        for org in world.orgs:
            qrng = random.Random(f"longdoc:{seed}:{org.doc}:questions")
            for level in LEVELS:
                names = qrng.sample(sorted(TEMPLATES[level]), questions_per_level)
                for j, tname in enumerate(names):
                    text, answer, support = TEMPLATES[level][tname](org, world)
                    hops = list(dict.fromkeys(i for i, _ in support))
                    questions.append(Question(
                        id=f"{org.doc}-{level[0]}{j}", text=text, answers=[answer],
                        item_ids=[docs[i].id for i in hops], kind=level, group=world.orgs[support[-1][0]].doc,
                        meta={"template": tname, "subject": org.name, "docs": [world.orgs[i].doc for i in hops],
                              "support": [{"doc": world.orgs[i].doc, "terms": terms} for i, terms in support]},
                    ))
        groups = {o.doc: [docs[o.index].id] for o in world.orgs}
        meta: dict[str, Any] = {"documents": size, "seed": seed, "doc_tokens": doc_tokens,
                                "questions_per_level": questions_per_level,
                                "words_per_doc": [len(d.text.split()) for d in docs]}
        if tokenizer is not None:
            meta["tokens_per_doc"] = [len(tokenizer(d.text, add_special_tokens=False)["input_ids"]) for d in docs]
        return TaskData(self.name, list(docs), questions, groups, meta)

    def score(self, question: Question, answer: Answer) -> dict[str, float]:
        return text_metrics(answer.text, question.answers)


register_task("longdoc", LongDocTask)
