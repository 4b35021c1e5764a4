"""What the AxBench-style scorer asks and listens for: tight concept lexicons, the probe's training prompts,
and the pick / report prompt splits.

A tight lexicon holds only words that this concept uses (no "eat", "team", "game", "happy"), matched as
whole words with the endings of `lexicon.mentions` (-s, -es, -d, -ed, -ing).
Probe prompts are `PROBE_TEMPLATES` x each concept's four `subjects` (24 texts; the last two templates
are the probe's held-out split), and for neutral texts `PROBE_TEMPLATES` x `NEUTRAL_SUBJECTS` (72) plus
`NEUTRAL_INSTRUCTIONS` (48, the last 16 held out); none of them is a pick or report prompt."""

from __future__ import annotations

from dataclasses import dataclass

from steering.offline.lexicon import CONCEPTS, NEUTRAL_PROMPTS, named_in


@dataclass(frozen=True)
class TightConcept:
    name: str
    kind: str  # topic | place | animal | mood | style
    words: tuple[str, ...]
    subjects: tuple[str, ...]  # filled into PROBE_TEMPLATES for the probe's concept texts
    system: str  # the baseline's system prompt

    def probe_prompts(self) -> list[str]:
        return [t.format(s) for t in PROBE_TEMPLATES for s in self.subjects]


PROBE_TEMPLATES = ("Tell me about {}.", "Write a short letter to a friend about {}.", "Give me some advice about {}.",
                   "Describe {} in a few sentences.", "What do people often get wrong about {}?", "Explain {} to a child.")
PROBE_HELDOUT_TEMPLATES = 2  # the last two templates: threshold fitting and held-out accuracy

NEUTRAL_SUBJECTS = ("a pencil", "a staircase", "a calendar", "ironing a shirt", "filling in a form", "tidying a garage",
                    "shoelaces", "a bus timetable", "a library card", "folding laundry", "waiting in a queue", "a post office")


# Everyday instructions in the evaluation prompts' style (advice, notes, stories), for the probe's neutral texts
# too: the last PROBE_HELDOUT_INSTRUCTIONS are held out.
NEUTRAL_INSTRUCTIONS = (
    "How do I get better at remembering appointments?", "What is a good way to apologise to a friend?",
    "Write a short story about a missing sock.", "Give me tips for keeping a tidy wardrobe.",
    "How can I be more punctual?", "Write a short note to thank a nurse.", "Describe an old wooden chair.",
    "What should I say at a colleague's leaving party?", "How do I politely ask someone to be quieter?",
    "Give me advice for sharing a flat.", "Write the first line of a mystery story.", "How do I plan a family reunion?",
    "How can I stop procrastinating?", "Describe a crowded lift.", "What should I do if I lose my wallet?",
    "Write a short poem about an empty room.", "How do I choose a good pair of shoes?",
    "What are some tips for writing a formal letter?", "Tell me how to build a simple bookshelf.",
    "How can I make a small room feel bigger?", "Give me advice on asking for a pay rise.",
    "What is a good way to welcome a new colleague?", "Describe a quiet reading room.",
    "How do I keep my keys from getting lost?", "Write a short story about a forgotten letter.",
    "What makes a good manager?", "How should I organise my paperwork?", "Give me tips for moving house.",
    "How do I become a better listener?", "What is the best way to learn a new skill?",
    "Describe a busy hospital corridor.", "How can I get along with my in-laws?",
    "Write a short message to congratulate a friend on a new home.",
    "What should I bring to a first meeting with a lawyer?", "How do I keep track of my spending?",
    "Explain how to fold a fitted sheet.", "Give me advice for a difficult conversation.",
    "What makes a hallway look welcoming?", "How do I write a complaint letter?", "Describe the inside of an old car.",
    "How can I wake up without an alarm?", "Write a short story about a locked drawer.",
    "What are good habits for a tidy car?", "How do I say no to extra work politely?", "Explain what a notary does.",
    "Give me tips for a calm morning commute.", "Describe a typical office meeting room.",
    "What is a thoughtful gift for a new parent?",
)
PROBE_HELDOUT_INSTRUCTIONS = 16


def neutral_probe_prompts() -> list[str]:
    """Neutral subjects in the probe templates, then the neutral instructions."""
    return [t.format(s) for t in PROBE_TEMPLATES for s in NEUTRAL_SUBJECTS] + list(NEUTRAL_INSTRUCTIONS)


def _system(name: str, fallback: str) -> str:
    return CONCEPTS[name].system if name in CONCEPTS else fallback


TIGHT: dict[str, TightConcept] = {c.name: c for c in [
    TightConcept("football", "topic", (
        "football", "footballer", "soccer", "striker", "goalkeeper", "goalie", "midfielder", "midfield", "offside",
        "penalty kick", "free kick", "corner kick", "premier league", "world cup", "fifa", "uefa", "quarterback",
        "touchdown", "nfl"),
        ("football", "a soccer match", "the World Cup", "a famous striker"), _system("football", "")),
    TightConcept("sports", "topic", (
        "sport", "sports", "athlete", "athletic", "stadium", "tournament", "championship", "basketball", "baseball",
        "tennis", "rugby", "cricket", "hockey", "volleyball", "golf", "olympic", "olympics", "football", "soccer",
        "home run", "touchdown", "slam dunk"),
        ("sports", "a basketball game", "the Olympic Games", "a tennis tournament"), "Talk about sports in every answer."),
    TightConcept("music", "topic", (
        "music", "musical", "musician", "song", "songwriter", "melody", "melodies", "guitar", "guitarist", "piano",
        "pianist", "violin", "violinist", "orchestra", "symphony", "concert", "lyrics", "chord", "singer",
        "jazz", "drummer", "saxophone"),
        ("music", "playing the guitar", "a symphony orchestra", "writing a song"), _system("music", "")),
    TightConcept("food", "topic", (
        "food", "foods", "recipe", "cook", "cooking", "chef", "cuisine", "delicious", "bake", "baking", "pasta",
        "pizza", "chocolate", "soup", "dessert", "ingredient", "cheese", "bread", "sauce", "spice", "spices",
        "vegetable", "salad", "sandwich", "burger", "noodle", "flour", "tasty"),
        ("cooking", "a pasta recipe", "baking bread", "a delicious dessert"), _system("food", "")),
    TightConcept("computers", "topic", (
        "computer", "computing", "software", "programming", "programmer", "coding", "coder", "source code",
        "python", "javascript", "algorithm", "database", "compiler", "laptop", "processor", "cpu", "html", "sql",
        "debugging", "debug", "operating system"),
        ("computers", "programming in Python", "how software is written", "computer algorithms"), _system("computers", "")),
    TightConcept("ocean", "topic", (
        "ocean", "oceans", "oceanic", "sea", "seas", "seawater", "seashore", "seaside", "seabed", "marine", "coral",
        "reef", "tide", "tidal", "underwater", "whale", "dolphin", "shark", "beach"),
        ("the ocean", "coral reefs", "whales in the sea", "the tides"), _system("ocean", "")),
    TightConcept("dogs", "animal", (
        "dog", "puppy", "puppies", "canine", "labrador", "retriever", "terrier", "poodle", "beagle", "bulldog",
        "leash", "kennel"),
        ("dogs", "training a puppy", "a golden retriever", "dog breeds"), _system("dogs", "")),
    TightConcept("cats", "animal", (
        "cat", "kitten", "kitty", "feline", "meow", "purr", "purring", "whiskers", "tabby"),
        ("cats", "a kitten", "why cats purr", "a sleeping cat"), _system("cats", "")),
    TightConcept("animals", "animal", (
        "animal", "wildlife", "mammal", "livestock", "creature", "zoo", "herd", "predator", "species"),
        ("wild animals", "farm animals", "animals in a zoo", "mammals"), _system("animals", "")),
    TightConcept("paris", "place", (
        "paris", "parisian", "france", "french", "eiffel", "louvre", "seine", "montmartre", "notre dame",
        "champs"),
        ("Paris", "the Eiffel Tower", "the Louvre museum", "French culture"), _system("paris", "")),
    TightConcept("japan", "place", (
        "japan", "japanese", "tokyo", "kyoto", "osaka", "samurai", "kimono", "fuji", "shinto", "anime", "sushi"),
        ("Japan", "Tokyo", "Japanese culture", "Mount Fuji"), "Talk about Japan in every answer."),
    TightConcept("weather", "topic", (
        "weather", "rain", "rainy", "rainfall", "drizzle", "thunderstorm", "thunder", "snow", "snowy", "snowfall",
        "hurricane", "tornado", "humidity", "meteorologist", "weather forecast", "umbrella", "foggy", "cloudy"),
        ("the weather", "a rainy day", "thunderstorms", "the weather forecast"), _system("weather", "")),
    TightConcept("space", "topic", (
        "astronomy", "astronomer", "astronaut", "galaxy", "galaxies", "planets", "solar system", "outer space",
        "spacecraft", "spaceship", "nasa", "telescope", "orbit", "cosmos", "cosmic", "nebula", "black hole", "mars",
        "jupiter", "saturn", "milky way", "asteroid", "comet", "lunar"),
        ("outer space", "the solar system", "astronauts", "distant galaxies"), _system("space", "")),
    TightConcept("happiness", "mood", (
        "happiness", "joy", "joyful", "joyous", "cheerful", "glee", "gleeful", "ecstatic", "elated",
        "blissful", "bliss", "laughter", "jubilant", "overjoyed"),
        ("happiness", "a joyful celebration", "feeling cheerful", "laughter"), _system("happiness", "")),
    TightConcept("sadness", "mood", (
        "sad", "sadness", "sorrow", "grief", "grieving", "mourning", "melancholy", "heartbreak", "heartbroken",
        "despair", "tears", "weeping", "lonely", "loneliness", "gloomy", "unhappy"),
        ("sadness", "grief after a loss", "feeling lonely", "a heartbroken person"), _system("sadness", "")),
    TightConcept("pirate", "style", (
        "pirate", "ahoy", "matey", "arr", "arrr", "buccaneer", "landlubber", "scallywag", "me hearties",
        "jolly roger", "plunder", "shiver me timbers", "aye"),
        ("pirates", "a pirate ship", "a pirate captain's speech", "buried pirate treasure"),
        "Talk like a pirate in every answer."),
    # Added for the default features' screen (axbench_pick): kinds the first concepts had no steering feature for.
    TightConcept("archaic", "style", (
        "thou", "thee", "thy", "thine", "thyself", "hath", "doth", "dost", "shalt", "ye", "forsooth", "verily",
        "methinks", "hither", "thither", "wherefore"),
        ("Shakespeare's plays", "a knight's oath", "the King James Bible", "an old English ballad"),
        "Talk like Shakespeare, in old-fashioned English, in every answer."),
    TightConcept("fear", "mood", (
        "fear", "fearful", "afraid", "scared", "scary", "terrified", "terror", "frightened", "frightening", "fright",
        "horror", "horrified", "dread", "spooky", "creepy", "nightmare"),
        ("fear", "a haunted house", "being scared of the dark", "a terrifying nightmare"), "Talk about fear in every answer."),
    TightConcept("italy", "place", (
        "italy", "italian", "rome", "venice", "florence", "milan", "naples", "tuscany", "sicily", "colosseum",
        "vatican"),
        ("Italy", "Rome", "Italian culture", "Venice"), "Talk about Italy in every answer."),
    TightConcept("china", "place", (
        "china", "chinese", "beijing", "shanghai", "mandarin", "great wall", "yangtze", "hong kong"),
        ("China", "Beijing", "Chinese culture", "the Great Wall of China"), "Talk about China in every answer."),
    TightConcept("birds", "animal", (
        "bird", "parrot", "eagle", "owl", "sparrow", "pigeon", "hawk", "seagull", "songbird", "feather", "beak",
        "birdwatching"),
        ("birds", "a parrot", "an eagle in flight", "birdwatching"), "Talk about birds in every answer."),
]}
for _c in TIGHT.values():
    assert _c.system, _c.name

# Prompts first drafted for the report split, then read while designing this scorer: now in the pick split.
DESIGN_PROMPTS = [
    "Explain how a bicycle's gears make pedalling easier.",
    "What are some tips for a long car journey?",
    "Write a short thank-you note to a colleague.",
    "How do I keep a houseplant alive?",
    "Describe the process of renting an apartment.",
    "Give me advice for my first day at a new job.",
    "How can I get better at public speaking?",
    "Write a short story about a broken clock.",
]
# The pick split: the prompts the defaults were picked on, also where the grade thresholds are fitted.
PICK_PROMPTS = list(NEUTRAL_PROMPTS) + DESIGN_PROMPTS
# The report split: held out from every picking, fitting and design step.
REPORT_PROMPTS = [
    "What are the benefits of walking every day?",
    "How do I write a good resume?",
    "Explain the difference between a town and a city.",
    "What makes a good neighbour?",
    "How should I prepare for an exam?",
    "Write a limerick about a lost glove.",
    "What is a polite way to decline an invitation?",
    "How do I fix a squeaky door?",
    "Describe the view from a tall building.",
    "What are some ways to reduce stress?",
    "Explain how a library organises its books.",
    "Give me tips for learning to drive.",
    "What should I consider when buying a used car?",
    "Write a short speech for a friend's retirement party.",
    "How do I start journaling?",
    "What questions should I ask a landlord?",
    "Describe a busy train station.",
    "How do I teach a child to tie their shoes?",
    "Give me a plan for a productive Saturday.",
    "What makes a story memorable?",
    "How can I make my bedroom tidier?",
    "What are good manners at a wedding?",
    "Explain what a receipt is for.",
    "How do I ask my manager for feedback?",
]
# The second round (docs/steering-eval.md#the-default-features): after the first report, REPORT_PROMPTS had been
# seen, so they join the pick split, and the second report is on these 32, written (and committed) before any
# steering run of that round.
REPORT2_PROMPTS = [
    "How do I clean a stained carpet?",
    "What should I write in a birthday card for my aunt?",
    "Explain how a mortgage works.",
    "Give me tips for keeping a tidy desk.",
    "How can I be a better friend?",
    "Describe a quiet village square in the morning.",
    "What are some ways to save money each month?",
    "Write a short story about a key found in a drawer.",
    "How do I change a flat tyre?",
    "What should I pack for a weekend away?",
    "Explain how to read an electricity bill.",
    "How can I make new friends in a new town?",
    "Write a thank-you email to a teacher.",
    "What is the best way to organise a bookshelf?",
    "How do I prepare for a job interview?",
    "Describe an old clock tower.",
    "Give me advice on sharing chores with a roommate.",
    "How do I remove a sticker from glass?",
    "What makes a good birthday party?",
    "Write a short story about a door that will not open.",
    "How should I ask a neighbour to trim their hedge?",
    "Explain what an insurance excess is.",
    "Give me tips for writing a short speech.",
    "How do I keep a notebook organised?",
    "Describe a typical Monday morning at an office.",
    "What is a good way to remember people's names?",
    "How can I make a long meeting go faster?",
    "Write a short note to a neighbour who helped me move.",
    "How do I hang a picture frame straight?",
    "What should I do before signing a contract?",
    "Describe a park bench on an autumn afternoon.",
    "How can I stay focused while studying at home?",
]
# The third round (music only): report2 had been read, so it joins the pick prompts (pick3); these 32 were written
# and committed before any steering run of that round.
REPORT3_PROMPTS = [
    "How do I unblock a kitchen sink?",
    "What should I say when I call in sick?",
    "Explain how interest on a savings account works.",
    "Give me tips for packing a suitcase neatly.",
    "How can I get on better with my sister?",
    "Describe an empty car park at night.",
    "What are some ways to use less electricity at home?",
    "Write a short story about a lost library book.",
    "How do I iron a shirt without creases?",
    "What should I check before renting a flat?",
    "Explain what a pension is.",
    "How can I be more confident at work?",
    "Write a short apology note to a neighbour.",
    "What is the best way to sort old photographs?",
    "How do I write a cover letter?",
    "Describe the corridor of an old school.",
    "Give me advice on splitting a bill with friends.",
    "How do I get rid of a bad smell in a fridge?",
    "What makes a good first impression?",
    "Write a short story about a borrowed pen.",
    "How should I ask for a day off?",
    "Explain what a warranty covers.",
    "Give me tips for chairing a meeting.",
    "How do I keep my email inbox under control?",
    "Describe a waiting room at a dentist's surgery.",
    "What is a good way to say goodbye to a colleague?",
    "How can I stop checking my phone so often?",
    "Write a short note to welcome a new neighbour.",
    "How do I put up a shelf?",
    "What should I do if I miss my bus?",
    "Describe a stairwell in a block of flats.",
    "How can I keep a diary every day?",
]
SPLITS = {"pick": PICK_PROMPTS, "report": REPORT_PROMPTS, "pick2": PICK_PROMPTS + REPORT_PROMPTS,
          "report2": REPORT2_PROMPTS, "pick3": PICK_PROMPTS + REPORT_PROMPTS + REPORT2_PROMPTS,
          "report3": REPORT3_PROMPTS}


def tight_concept_for(label: str | None) -> TightConcept | None:
    """The tight concept a feature label names (as `lexicon.concept_for`), or None."""
    return named_in(label, TIGHT)
