"""A reproducible news-like corpus with planted facts, for the benchmark.

Articles mix a few dozen sentence templates filled from pools of names, places,
organisations, numbers and dates. The same templates fill every article with other values,
so every planted fact has near-duplicates elsewhere ("the port authority of Velmont
approved 412 permits" vs "... of Carrow approved 97 permits"): retrieval must match the
whole combination, not one rare word. Every article carries one planted fact whose slot
combination is unique in the corpus, with a question and its expected answer.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

FIRST = """James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara
Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy Anthony Betty
Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol
Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald Rebecca Jason Sharon Edward
Laura Jeffrey Cynthia Ryan Dorothy Jacob Amy Gary Kathleen Nicholas Angela Eric Shirley Jonathan
Emma Stephen Brenda Larry Pamela Justin Nicole Scott Anna Brandon Samantha Benjamin Katherine
Samuel Christine Gregory Debra Alexander Rachel Patrick Carolyn Frank Janet Raymond Maria Jack
Olivia Dennis Heather Jerry Helen Tyler Catherine Aaron Diane Jose Julie Adam Victoria Nathan
Joyce Henry Lauren Zachary Kelly Douglas Christina Peter Ruth Kyle Joan Noah Virginia Ethan
Judith Jeremy Evelyn Christian Hannah Walter Andrea Keith Megan Austin Cheryl Roger Jacqueline
Terry Madison Sean Teresa Gerald Abigail Carl Sophia Dylan Martha Harold Sara Jordan Gloria
Jesse Janice Bryan Kathryn Lawrence Ann Arthur Isabella Gabriel Judy Bruce Charlotte Logan Julia
Amara Kenji Priya Mateo Aisha Lars Ingrid Tomasz Yusuf Elena Dmitri Chiara Sipho Mei Rafael
Oksana Hiroshi Fatima Pierre Noor""".split()
LAST = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill
Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans
Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez
Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks
Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers
Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson
Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds
Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens
Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells
Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon
Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd
Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens
Okafor Tanaka Lindqvist Kowalski Haddad Novak Rossi Dlamini Wong Moreau Petrenko Sato Ibrahim
Dubois Kruger""".split()
CITIES = """Velmont Carrow Ashford Brightwater Dunmore Eastleigh Fairhaven Glenrock Harlow
Ironbridge Juniper Kestrel Lakemoor Marsden Northgate Oakridge Pembrook Quarry Redfield Stonebury
Thornbury Upton Valewood Westbrook Yarrow Zephyr Aldergrove Bramford Cinderford Denholm Elmstead
Foxley Greyhaven Hollins Ivybridge Kingsmere Longford Millbrook Newhurst Oldcastle Portmere
Ravenscar Silverton Tamworth Underhill Wrenfield Ambleside Birchwood Coldharbour Drayton
Edgewater Fernhill Goldcrest Highcliff Larkspur Moorfield Norwood Orchard Pinecrest Riverton
Saltmarsh Timberlake Whitmore Ashbourne Blackwater Clearwater Deepdale Evergreen Falconridge
Granite Harbourside Kingsbridge Lindenfield Meadowvale Newbridge Summerfield Westfall""".split()
ORGS = """city council|school board|health department|port authority|transit agency|water
utility|housing authority|parks department|fire department|police department|planning
commission|chamber of commerce|public library|regional hospital|state university|county court|
environmental agency|airport authority|energy cooperative|farmers union|teachers union|tourism
board|highway department|election commission|food bank|arts council|sanitation department|
veterans office|coast guard station|zoning board""".replace("\n", " ").split("|")
ORGS = [o.strip() for o in ORGS]
THINGS = """housing permits|electric buses|vaccination clinics|school laptops|street lights|
affordable apartments|flood barriers|solar panels|bicycle lanes|park benches|water meters|
charging stations|hospital beds|library cards|fishing licences|building inspections|
emergency shelters|trees|speed cameras|wind turbines|classroom teachers|nurses|police officers|
bus shelters|recycling bins|public toilets|heat pumps|community gardens|drinking fountains|
rescue boats|fire hydrants|traffic signals|scholarships|small business grants|food parcels|
apprenticeships|security cameras|crosswalks|playgrounds|air quality sensors""".replace(
    "\n", " ").split("|")
THINGS = [t.strip() for t in THINGS]
VERBS = ["approved", "installed", "ordered", "inspected", "funded", "opened", "hired",
         "replaced", "delivered", "issued", "repaired", "planted"]
ROLES = ["director", "chair", "spokesperson", "treasurer", "chief executive", "commissioner",
         "president", "deputy director", "general counsel", "head of operations"]
EVENTS = ["new bridge", "harbour museum", "children's hospital wing", "science festival",
          "light rail line", "public swimming pool", "concert hall", "farmers market",
          "cycling championship", "flood defence wall", "sports stadium", "airport terminal",
          "book fair", "tech incubator", "marathon", "food festival", "ferry service",
          "recycling plant", "botanical garden", "film festival"]
CO_A = """North South East West Blue Red Green Silver Golden Iron Bright Clear Swift Prime
Summit Harbor River Stone Oak Pine Cedar Maple Falcon Eagle Wolf Bear Star Sun Moon Cloud
Storm Ocean Delta Apex Nova Vertex Quantum Atlas Orion Lumen""".split()
CO_B = """wind field bridge gate way point line stream path works craft forge light wave
peak ridge haven port view stone""".split()
CO_C = ["Logistics", "Foods", "Energy", "Pharmaceuticals", "Robotics", "Textiles",
        "Insurance", "Airlines", "Motors", "Software", "Mining", "Shipping", "Media",
        "Biotech", "Steel", "Telecom", "Retail", "Capital", "Chemicals", "Semiconductors"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
TOPIC_WORDS = """budget residents officials council plans vote meeting spending report review
survey delays costs contract project construction repairs funding tax schools traffic weather
storm flooding drought harvest prices inflation wages jobs unemployment tourism visitors
exports factory strike talks agreement lawsuit ruling appeal election campaign candidates
turnout hospital patients doctors vaccine outbreak research scientists study data climate
emissions energy electricity grid pipeline railway airport ferry bridge highway housing rent
mortgage market shares investors profits losses merger startup technology software privacy
security police crime court judge jury festival museum concert team season match coach
players fans stadium trophy league""".split()


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _company(rng: random.Random) -> str:
    return f"{rng.choice(CO_A)}{rng.choice(CO_B)} {rng.choice(CO_C)}"


def _num(rng: random.Random) -> str:
    n = rng.choice([rng.randint(3, 99), rng.randint(100, 999), rng.randint(1000, 20000)])
    return f"{n:,}"


def _date(rng: random.Random) -> tuple[str, int, int]:
    return rng.choice(MONTHS), rng.randint(1, 28), rng.randint(2015, 2025)


@dataclass
class Fact:
    """A planted fact: the question, the accepted answers and the article holding it."""

    question: str
    answers: list[str]
    doc_id: str
    kind: str
    sentence: str


class _Facts:
    """Fact sentences of four kinds; each remembers its question key so a key (the slot
    combination a question names) is used by one sentence of the whole corpus only."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[tuple] = set()

    def make(self) -> tuple[str, str, list[str], str]:
        """(sentence, question, answers, kind) with a key not used before."""
        for _ in range(100):
            kind = self.rng.choice(["count", "count", "who", "when", "where"])
            got = getattr(self, "_" + kind)()
            if got[0] not in self.used:
                self.used.add(got[0])
                return (*got[1:], kind)
        raise RuntimeError("fact keys exhausted")

    def _count(self) -> tuple:
        r = self.rng
        org, city, things, verb = r.choice(ORGS), r.choice(CITIES), r.choice(THINGS), \
            r.choice(VERBS)
        month, _, year = _date(r)
        num, person, role = _num(r), _name(r), r.choice(ROLES)
        s = (f"The {org} of {city} {verb} {num} {things} in {month} {year}, "
             f"according to {person}, its {role}.")
        q = f"How many {things} did the {org} of {city} say it {verb} in {month} {year}?"
        return ("count", org, city, things, verb, month, year), s, q, [num]

    def _who(self) -> tuple:
        r = self.rng
        org, city, role = r.choice(ORGS), r.choice(CITIES), r.choice(ROLES)
        person = _name(r)
        month, day, year = _date(r)
        s = (f"{person} was appointed {role} of the {city} {org} on {month} {day}, {year}, "
             f"replacing {_name(r)}.")
        q = f"Who was appointed {role} of the {city} {org} in {year}?"
        return ("who", org, city, role, year), s, q, [person]

    def _when(self) -> tuple:
        r = self.rng
        event, city = r.choice(EVENTS), r.choice(CITIES)
        month, day, year = _date(r)
        s = (f"The {event} in {city} is scheduled to open on {month} {day}, {year}, "
             f"{_name(r)} told reporters.")
        q = f"When is the {event} in {city} scheduled to open?"
        return ("when", event, city), s, q, [f"{month} {day}, {year}", f"{month} {day}"]

    def _where(self) -> tuple:
        r = self.rng
        company, city = _company(r), r.choice(CITIES)
        s = (f"{company} will move its headquarters to {city}, its chief executive "
             f"{_name(r)} announced on {r.choice(MONTHS)} {r.randint(1, 28)}.")
        q = f"Where will {company} move its headquarters?"
        return ("where", company), s, q, [city]


def _filler(rng: random.Random, city: str, org: str, people: list[str]) -> str:
    """One news-like sentence about the article's city, organisation and people."""
    w = lambda: rng.choice(TOPIC_WORDS)  # noqa: E731
    p = rng.choice(people)
    month, day, year = _date(rng)
    n = _num(rng)
    pct = f"{rng.randint(2, 95)} percent"
    templates = [
        f"Officials in {city} said the {w()} would be reviewed before {month} {year}.",
        f"“We have heard the concerns about {w()} and {w()},” said {p}, who has followed "
        f"the {org} for years.",
        f"The {org} estimated that {n} residents were affected by the {w()} last {month}.",
        f"According to a report published on {month} {day}, {pct} of households in {city} "
        f"supported the {w()} plan.",
        f"{p} said the {w()} had cost about ${n} more than expected.",
        f"Critics argued that the {w()} would do little to ease {w()} in the short term.",
        f"The {org} will meet again on {month} {day} to discuss the {w()} and the {w()}.",
        f"In {year}, a similar {w()} in {rng.choice(CITIES)} was delayed by {w()} and "
        f"rising {w()}.",
        f"Nearly {pct} of the {w()} budget went to {w()}, {p} said.",
        f"“This is about {w()}, not {w()},” {p} told a crowded meeting on {month} {day}.",
        f"Residents of {city} have complained about {w()} since {year}.",
        f"The {org} did not respond to a request for comment about the {w()}.",
        f"Local businesses reported a {pct} drop in {w()} during the {w()}.",
        f"{p}, a spokesperson for the {org}, said {n} people had signed a petition.",
        f"The decision followed months of {w()} between the {org} and {rng.choice(CITIES)} "
        f"officials.",
        f"Analysts expect {w()} to remain high until at least {year}.",
        f"The {w()} was first proposed by {_name(rng)} of the {rng.choice(ORGS)} in {year}.",
        f"About {n} {w()} were recorded in {city} in {month}, up from the year before.",
        f"{p} said a final decision on the {w()} was expected by {month}.",
        f"Some {w()} experts warned that the {w()} could take years to complete.",
    ]
    return rng.choice(templates)


def make_article(rng: random.Random, facts: _Facts, index: int
                 ) -> tuple[str, str, list[Fact]]:
    """(file name, text, planted facts) of one article."""
    city, org = rng.choice(CITIES), rng.choice(ORGS)
    people = [_name(rng) for _ in range(3)]
    month, day, year = _date(rng)
    topic = rng.choice(TOPIC_WORDS)
    what = rng.choice(["plan", "costs", "delays", "vote", "report"])
    title = f"{city} {org} faces questions over {topic} {what}"
    name = f"{year}/{city.lower()}-{org.replace(' ', '-')}-{index:06d}.txt"
    paragraphs: list[list[str]] = []
    n_par = rng.randint(5, 11)
    for _ in range(n_par):
        paragraphs.append([_filler(rng, city, org, people)
                           for _ in range(rng.randint(2, 4))])
    # Distractor fact sentences (their keys are unique too, so no question is ambiguous),
    # and one planted fact per article (two in one article of three).
    planted: list[Fact] = []
    for k in range(rng.randint(1, 3)):
        sentence, question, answers, kind = facts.make()
        p = rng.randrange(len(paragraphs))
        paragraphs[p].insert(rng.randint(0, len(paragraphs[p])), sentence)
        if k < 1 + (index % 3 == 0):
            planted.append(Fact(question, answers, name, kind, sentence))
    body = "\n\n".join(" ".join(p) for p in paragraphs)
    text = (f"{title}\nPublished: {month} {day}, {year}\nBy: {people[0]}\n\n{body}\n")
    return name, text, planted


def generate(corpus: Path, target_chunks: int, seed: int = 20261126,
             chunks_per_article: float | None = None) -> list[Fact]:
    """Write a corpus of about ``target_chunks`` chunks into ``corpus``; returns the facts.

    Idempotent: an existing corpus generated with the same target and seed is kept.
    """
    marker = corpus / ".bench.json"
    if marker.exists():
        meta = json.loads(marker.read_text())
        if meta.get("target") == target_chunks and meta.get("seed") == seed:
            return [Fact(**f) for f in meta["facts"]]
    corpus.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    facts = _Facts(rng)
    if chunks_per_article is None:
        chunks_per_article = _calibrate(seed)
    n_articles = max(1, round(target_chunks / chunks_per_article))
    planted: list[Fact] = []
    for i in range(n_articles):
        name, text, got = make_article(rng, facts, i)
        path = corpus / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        planted.extend(got)
    marker.write_text(json.dumps({"target": target_chunks, "seed": seed, "articles": n_articles,
                                  "facts": [asdict(f) for f in planted]}))
    return planted


def _calibrate(seed: int, sample: int = 60) -> float:
    """Average chunks per generated article, measured with the real chunker."""
    from assistant.chunking import chunk_article
    from assistant.corpus import parse_header
    from assistant.settings import Settings

    s = Settings()
    rng = random.Random(seed + 1)
    facts = _Facts(rng)
    total = 0
    for i in range(sample):
        _, text, _ = make_article(rng, facts, i)
        _, _, start, _ = parse_header(text)
        total += len(chunk_article(text, start, len(text), s.chunk_tokens,
                                   s.chunk_overlap_tokens))
    return total / sample


def change_files(corpus: Path, fraction: float, seed: int) -> list[Path]:
    """Append a sentence to ``fraction`` of the articles (planted facts stay true)."""
    files = sorted(p for p in corpus.rglob("*.txt"))
    rng = random.Random(seed)
    chosen = rng.sample(files, max(1, round(len(files) * fraction)))
    for p in chosen:
        text = p.read_text(encoding="utf-8").rstrip("\n")
        text += ("\n\nUpdate: " + _filler(rng, rng.choice(CITIES), rng.choice(ORGS),
                                            [_name(rng)]) + "\n")
        p.write_text(text, encoding="utf-8")
    return chosen
