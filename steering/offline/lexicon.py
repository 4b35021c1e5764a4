"""What the steering evaluation asks and listens for: the neutral prompts, and each concept's keywords,
differential prompts and system-prompt baseline."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

T = TypeVar("T")

NEUTRAL_PROMPTS = [
    "Tell me about your weekend.",
    "What is a good way to start the morning?",
    "Can you give me some advice for a job interview?",
    "Write a short story about a lost key.",
    "What do you think about learning a new language?",
    "How can I be more productive at work?",
    "Describe your ideal day.",
    "What is the best way to make new friends?",
    "Give me three tips for saving money.",
    "Write a short poem about time.",
    "What should I do when I feel bored?",
    "Tell me something interesting.",
    "How do I stay motivated?",
    "What makes a good teacher?",
    "Write a short letter to a friend.",
    "Explain why sleep is important.",
    "What is your favourite thing to talk about?",
    "Give me an idea for a birthday present.",
    "How can I improve my writing?",
    "Tell me a fun fact.",
    "What would you do with a free afternoon?",
    "Describe a memorable journey.",
    "Write the opening line of a novel.",
    "What is a hobby I could pick up?",
    "What is a good habit to build?",
    "How do I organise my desk?",
    "Write a short note to a neighbour.",
    "What is the most useful thing you know?",
    "Describe an ordinary Tuesday.",
    "What should I write in a thank-you card?",
    "How do I become more patient?",
    "Tell me about a good book.",
    "What is a good question to ask a stranger?",
    "Describe a quiet evening at home.",
    "How do I plan a busy week?",
    "Write two sentences about a door.",
    "What makes a place feel like home?",
    "Give me a tip for remembering names.",
    "What is a good way to end the day?",
    "What is something people often get wrong?",
]


@dataclass(frozen=True)
class Concept:
    name: str
    keywords: tuple[str, ...]  # whole words; see `mentions` for the endings allowed
    positive: tuple[str, ...]  # prompts about the concept, for the differential ranking
    system: str  # the baseline's system prompt


CONCEPTS: dict[str, Concept] = {c.name: c for c in [
    Concept("ocean", ("ocean", "sea", "wave", "beach", "marine", "coral", "tide", "shore", "coast", "underwater",
                      "seawater", "oceanic", "reef", "sailor", "ship", "whale", "dolphin", "fish", "seaside"),
            ("Tell me about the ocean.", "What lives in the deep sea?", "Describe waves crashing on the beach.",
             "Why is the sea salty?", "I love swimming in the ocean.", "Tell me about coral reefs and marine life.",
             "What causes the tides?", "Describe a walk along the seashore."),
            "Talk about the ocean and the sea in every answer."),
    Concept("dogs", ("dog", "puppy", "puppies", "canine", "bark", "barking", "leash", "breed", "pet", "labrador",
                     "retriever", "terrier", "poodle"),
            ("Tell me about dogs.", "How do I train my puppy?", "What is the best dog breed for a family?",
             "My dog keeps barking at night.", "Why do dogs wag their tails?", "I want to adopt a dog.",
             "What should I feed my puppy?", "Describe a golden retriever."),
            "Talk about dogs in every answer."),
    Concept("cats", ("cat", "kitten", "kitty", "feline", "meow", "purr", "purring", "whiskers"),
            ("Tell me about cats.", "Why do cats purr?", "How do I care for a kitten?", "My cat scratches the sofa.",
             "What do cats eat?", "Describe a fluffy cat sleeping in the sun.", "Why do cats meow?",
             "Are cats good pets?"),
            "Talk about cats in every answer."),
    Concept("space", ("space", "planet", "star", "galaxy", "universe", "astronaut", "moon", "orbit", "rocket",
                      "solar", "cosmos", "cosmic", "nasa", "telescope", "mars", "jupiter", "earth"),
            ("Tell me about outer space.", "How many planets are in the solar system?", "What is a black hole?",
             "Describe the night sky full of stars.", "How do astronauts live in orbit?", "Tell me about galaxies.",
             "What is on the surface of Mars?", "How do rockets reach space?"),
            "Talk about outer space in every answer."),
    Concept("music", ("music", "musical", "song", "sing", "singing", "singer", "melody", "guitar", "piano", "band",
                      "concert", "rhythm", "instrument", "album", "musician", "tune", "lyrics", "orchestra"),
            ("Tell me about music.", "How do I learn to play the guitar?", "What makes a song catchy?",
             "Describe a live concert.", "Who are the greatest composers?", "I love singing in the shower.",
             "What instrument should I learn?", "Tell me about jazz music."),
            "Talk about music in every answer."),
    Concept("food", ("food", "cook", "cooking", "recipe", "dish", "meal", "delicious", "bake", "baking", "bread",
                     "kitchen", "eat", "eating", "flavor", "flavour", "pasta", "cake", "chocolate", "soup", "taste",
                     "ingredient", "ingredients", "chef", "fruit", "vegetable", "cheese", "pizza", "dessert", "breakfast",
                     "lunch", "dinner", "snack", "sandwich", "ice cream", "burger", "salad"),
            ("Tell me about cooking.", "What is a good recipe for dinner?", "How do I bake bread?",
             "Describe a delicious meal.", "What is your favourite food?", "How do I make pasta sauce?",
             "Tell me about chocolate cake.", "What spices go well with chicken?"),
            "Talk about food and cooking in every answer."),
    Concept("paris", ("paris", "france", "french", "eiffel", "parisian", "seine", "louvre"),
            ("Tell me about Paris.", "What should I see in Paris?", "Describe the Eiffel Tower.",
             "What is France famous for?", "I am travelling to Paris next week.", "Tell me about French cuisine.",
             "What is the Louvre?", "Describe a walk along the Seine."),
            "Talk about Paris and France in every answer."),
    Concept("sadness", ("sad", "sadness", "sorrow", "grief", "tears", "cry", "crying", "lonely", "loneliness",
                        "melancholy", "heartbreak", "heartbroken", "despair", "unhappy", "depressed", "gloomy", "mourn",
                        "mourning", "weep", "weeping", "miss"),
            ("I feel so sad today.", "My heart is broken.", "I miss my grandmother who passed away.",
             "Everything feels hopeless and lonely.", "I cried all night.", "Why do I feel so down?",
             "I lost my best friend.", "Describe a feeling of deep sorrow."),
            "Talk about sadness and sorrow in every answer."),
    Concept("weather", ("weather", "rain", "raining", "rainy", "storm", "snow", "snowing", "sunny", "cloud", "cloudy",
                        "wind", "windy", "forecast", "temperature", "thunder", "umbrella", "fog", "climate"),
            ("What is the weather like today?", "Will it rain tomorrow?", "Describe a thunderstorm.",
             "I love snowy winter days.", "What causes wind?", "Tell me about the weather forecast.",
             "Why is the sky cloudy?", "How do hurricanes form?"),
            "Talk about the weather in every answer."),
    Concept("animals", ("animal", "cow", "cattle", "livestock", "farm", "buffalo", "horse", "pig", "sheep", "goat",
                        "dog", "cat", "bird", "wildlife", "creature", "herd", "graze", "grazing", "pet", "zoo",
                        "mammal", "calf", "bull", "chicken", "deer", "wolf", "lion", "elephant"),
            ("Tell me about farm animals.", "What do cows eat?", "Describe a herd of buffalo.", "I love animals.",
             "How do horses sleep?", "What animals live on a farm?", "Tell me about wildlife in Africa.",
             "Why do sheep live in flocks?"),
            "Talk about animals in every answer."),
    Concept("happiness", ("happy", "happiness", "joy", "joyful", "cheerful", "delighted", "smile", "smiling", "laugh",
                          "laughing", "laughter", "glad", "excited", "excitement", "delight", "grin", "celebrate"),
            ("I feel so happy today!", "Tell me about a joyful moment.", "What makes people smile?",
             "I just got great news and I am thrilled.", "Describe pure happiness.", "We laughed all day long.",
             "Why does laughter feel good?", "Describe a cheerful morning."),
            "Talk about happiness and joy in every answer."),
    Concept("forest", ("forest", "tree", "woods", "woodland", "oak", "pine", "leaf", "leaves", "branch", "moss",
                       "jungle", "rainforest", "timber", "bark", "canopy", "trunk"),
            ("Tell me about forests.", "Describe a walk in the woods.", "Why are rainforests important?",
             "What trees grow in a pine forest?", "Describe the forest canopy.", "I love the smell of pine trees.",
             "What animals live in the woods?", "Why do leaves change colour in autumn?"),
            "Talk about forests and trees in every answer."),
    Concept("christmas", ("christmas", "santa", "xmas", "reindeer", "sleigh", "ornament", "mistletoe", "elves", "elf",
                          "gingerbread", "carol", "carols", "stocking", "festive", "chimney", "snowman"),
            ("Tell me about Christmas.", "What does Santa bring children?", "How do I decorate a Christmas tree?",
             "Describe Christmas morning.", "What are traditional Christmas foods?", "Sing me a Christmas carol.",
             "Where do Santa's reindeer live?", "What gifts should I buy for Christmas?"),
            "Talk about Christmas in every answer."),
    Concept("computers", ("computer", "software", "program", "programming", "code", "coding", "algorithm", "python",
                          "developer", "laptop", "keyboard", "hardware", "processor", "database", "internet",
                          "digital", "app"),
            ("Tell me about computers.", "How do I learn programming?", "What is an algorithm?",
             "Explain how a processor works.", "What is the best laptop for coding?", "How does the internet work?",
             "Tell me about Python code.", "What does a software developer do?"),
            "Talk about computers and programming in every answer."),
    Concept("money", ("money", "dollar", "cash", "bank", "finance", "financial", "invest", "investment", "investing",
                      "stock", "budget", "wealth", "rich", "profit", "price", "coin", "currency", "loan", "salary"),
            ("Tell me about money.", "How do I invest in stocks?", "What is a good budget?", "How do banks work?",
             "I want to get rich.", "Explain inflation and prices.", "What is a currency?", "How do loans work?"),
            "Talk about money and finance in every answer."),
    Concept("football", ("football", "soccer", "goal", "match", "team", "player", "league", "stadium", "score",
                         "striker", "coach", "fans", "kick", "referee", "sport", "sports", "game"),
            ("Tell me about football.", "Who is the best soccer player?", "Describe a penalty kick.",
             "How does the World Cup work?", "I love watching football matches.", "What position should I play?",
             "Tell me about the Premier League.", "How do I become a better striker?"),
            "Talk about football in every answer."),
    Concept("sports", ("sport", "sports", "athlete", "stadium", "tournament", "championship", "basketball", "baseball",
                       "tennis", "football", "soccer", "rugby", "hockey", "golf", "olympic", "olympics", "team", "coach",
                       "match", "league"),
            ("Tell me about sports.", "Who is the best basketball player?", "Describe a tennis match.",
             "How do the Olympic Games work?", "I love watching baseball.", "What sport should I try?",
             "Tell me about a famous athlete.", "How do I get better at golf?"),
            "Talk about sports in every answer."),
    Concept("fear", ("fear", "afraid", "scared", "scary", "terrified", "terror", "frightened", "fright", "horror",
                     "dread", "panic", "nightmare", "creepy", "spooky", "fearful"),
            ("I am scared of the dark.", "Tell me about fear.", "Describe a haunted house.",
             "What are people most afraid of?", "I had a terrifying nightmare.", "Why do horror films frighten us?",
             "Describe a spooky night in the woods.", "How do I stop feeling afraid?"),
            "Talk about fear in every answer."),
]}


def named_in(label: str | None, table: Mapping[str, T]) -> T | None:
    """The entry of `table` whose name the label contains as a whole word (the first, case-insensitive), or None."""
    text = (label or "").lower()
    return next((c for name, c in table.items() if re.search(rf"\b{re.escape(name)}\b", text)), None)


def concept_for(label: str | None) -> Concept | None:
    """The concept a feature label names (first concept name contained in the label, case-insensitive)."""
    return named_in(label, CONCEPTS)


def mentions(text: str, keywords: Sequence[str]) -> bool:
    """Whether `text` contains one of `keywords` as a whole word, case-insensitive; an ending "s", "es", "d", "ed"
    or "ing" is allowed, so "laughed" counts for "laugh" and "galaxies" needs its own keyword."""
    return bool(matches(text, keywords, first=True))


def matches(text: str, keywords: Sequence[str], first: bool = False) -> list[str]:
    """The keywords `text` mentions (as `mentions` reads them), lower-case, in order of appearance."""
    if not keywords:
        return []
    pattern = r"\b(" + "|".join(re.escape(k) for k in sorted(keywords, key=len, reverse=True)) + r")(?:s|es|d|ed|ing)?\b"
    found = re.finditer(pattern, text, flags=re.IGNORECASE)
    return [m.group(1).lower() for m in (found if not first else [next(found, None)]) if m is not None]
