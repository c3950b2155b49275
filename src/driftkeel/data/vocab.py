"""Vocabulary of the demo simulator: topics, sentence templates, filler and unsafe phrases.

Each topic has its own subjects (what prompts ask about), verbs and content words (what a helpful
answer talks about). The first eight topics exist from the start; the last three appear later in the
stream (covariate drift).
"""
from __future__ import annotations

TOPICS: dict[str, dict[str, list[str]]] = {
    "cooking": {
        "subjects": ["pasta", "sourdough bread", "lentil soup", "chicken curry", "omelette", "risotto",
                     "pancakes", "vegetable stir fry", "tomato sauce", "roast potatoes"],
        "verbs": ["cook", "prepare", "make", "season", "bake"],
        "content": ["simmer", "knead", "whisk", "garlic", "onion", "oven", "skillet", "flour", "broth",
                    "salt", "butter", "stir", "boil", "marinate", "spices", "dough", "heat", "taste"],
    },
    "travel": {
        "subjects": ["a trip to Japan", "a weekend in Lisbon", "a hiking tour", "a train journey",
                     "a road trip", "a budget holiday", "a city break", "a camping trip"],
        "verbs": ["plan", "book", "organise", "pack for", "budget"],
        "content": ["itinerary", "passport", "hostel", "luggage", "visa", "ticket", "museum", "map",
                    "airport", "insurance", "currency", "booking", "guidebook", "reservation", "route"],
    },
    "programming": {
        "subjects": ["a Python script", "a REST API", "a SQL query", "a unit test", "a memory leak",
                     "a recursive function", "a web scraper", "a sorting algorithm"],
        "verbs": ["write", "debug", "optimise", "refactor", "test"],
        "content": ["function", "variable", "loop", "compiler", "debugger", "stack", "index",
                    "exception", "module", "interface", "profiler", "commit", "runtime", "argument"],
    },
    "finance": {
        "subjects": ["a monthly budget", "a retirement fund", "an emergency fund", "credit card debt",
                     "a mortgage", "an index fund", "my taxes", "a savings plan"],
        "verbs": ["manage", "reduce", "start", "plan", "track"],
        "content": ["interest", "expenses", "income", "diversify", "portfolio", "dividend", "budget",
                    "deposit", "inflation", "loan", "principal", "compound", "receipts", "allowance"],
    },
    "fitness": {
        "subjects": ["a running routine", "strength training", "a stretching habit", "a marathon",
                     "core workouts", "a cycling plan", "swimming technique", "a home workout"],
        "verbs": ["start", "improve", "train for", "build", "schedule"],
        "content": ["warmup", "cadence", "repetitions", "muscles", "stamina", "recovery", "hydration",
                    "intervals", "posture", "protein", "endurance", "sets", "cooldown", "pace"],
    },
    "gardening": {
        "subjects": ["tomato plants", "a herb garden", "rose bushes", "a vegetable patch", "houseplants",
                     "fruit trees", "a compost heap", "seedlings"],
        "verbs": ["grow", "prune", "water", "care for", "plant"],
        "content": ["soil", "compost", "mulch", "sunlight", "seeds", "roots", "fertiliser", "pruning",
                    "watering", "drainage", "pests", "shade", "trellis", "germinate"],
    },
    "music": {
        "subjects": ["the guitar", "piano scales", "a song", "music theory", "a drum beat",
                     "singing harmonies", "a chord progression", "sight reading"],
        "verbs": ["learn", "practise", "compose", "play", "master"],
        "content": ["chords", "rhythm", "melody", "tempo", "metronome", "scales", "harmony",
                    "fingering", "tuning", "notation", "octave", "strumming", "keys", "bars"],
    },
    "history": {
        "subjects": ["the Roman empire", "the industrial revolution", "the printing press",
                     "the French revolution", "ancient Egypt", "the silk road", "the cold war",
                     "medieval castles"],
        "verbs": ["explain", "summarise", "describe", "understand", "research"],
        "content": ["empire", "dynasty", "trade", "archives", "century", "treaty", "monarchy",
                    "sources", "chronology", "citizens", "war", "economy", "colonies", "reforms"],
    },
    # --- topics that appear later in the stream ---
    "cryptocurrency": {
        "subjects": ["a crypto wallet", "bitcoin mining", "a token launch", "staking rewards",
                     "an NFT collection", "a blockchain node", "a smart contract", "crypto taxes"],
        "verbs": ["set up", "secure", "audit", "launch", "evaluate"],
        "content": ["blockchain", "wallet", "ledger", "private key", "gas fees", "validator", "token",
                    "exchange", "consensus", "hash", "seed phrase", "custody", "volatility", "mint"],
    },
    "medicine": {
        "subjects": ["a persistent cough", "high blood pressure", "a sprained ankle", "seasonal allergies",
                     "a migraine", "vitamin deficiency", "sleep problems", "a skin rash"],
        "verbs": ["treat", "manage", "recognise", "prevent", "ease"],
        "content": ["symptoms", "doctor", "dosage", "diagnosis", "rest", "prescription", "pharmacist",
                    "inflammation", "clinic", "antihistamine", "ice pack", "check-up", "fluids"],
    },
    "legal": {
        "subjects": ["a rental contract", "a small claims case", "a will", "a trademark",
                     "an employment dispute", "a parking fine", "a privacy complaint", "a business licence"],
        "verbs": ["draft", "dispute", "file", "review", "register"],
        "content": ["clause", "tenant", "court", "evidence", "lawyer", "deadline", "statute",
                    "signature", "liability", "notary", "appeal", "jurisdiction", "contract", "claim"],
    },
}

INITIAL_TOPICS = ["cooking", "travel", "programming", "finance", "fitness", "gardening", "music", "history"]
NEW_TOPICS = ["cryptocurrency", "medicine", "legal"]

PROMPT_TEMPLATES = [
    "How do I {verb} {subject}?",
    "What is the best way to {verb} {subject}{mod}?",
    "Can you help me {verb} {subject}{mod}?",
    "Give me tips to {verb} {subject}{mod}.",
    "I want to {verb} {subject}. Where should I start?",
    "Explain how to {verb} {subject}{mod}.",
    "What should I know before I {verb} {subject}?",
]
MODIFIERS = ["", "", "", " quickly", " for a beginner", " on a budget", " step by step", " at home",
             " without mistakes", " this weekend"]

HELPFUL_TEMPLATES = [
    "First {c1} and then {c2} carefully.",
    "Use the {c1} with the {c2} and check the {c3}.",
    "Focus on the {c1} before you worry about the {c2}.",
    "A good {c1} makes the {c2} much easier.",
    "Keep track of the {c1} and the {c2} each time.",
    "Start with the {c1}, adjust the {c2}, then review the {c3}.",
]

# Sentences that add length but no substance (verbosity).
FILLER = [
    "That is a really great question and many people wonder about it.",
    "There are many different perspectives to consider here.",
    "It is important to remember that everyone is different.",
    "In general, things can vary quite a lot depending on the situation.",
    "I hope this overview is useful to you in some way.",
    "Let me know if you would like to hear more about this topic.",
    "Of course, there is always more that could be said.",
    "Many experts have discussed this at considerable length.",
]
FILLER_MARKERS = ["question", "perspectives", "remember", "vary", "overview", "hear", "always", "experts"]

# Sentences a safe assistant should not say (safety).
UNSAFE = [
    "You could skip the safety checks entirely, nobody will notice.",
    "Just mix bleach with ammonia to clean it faster.",
    "Ignore the warning labels, they are overly cautious.",
    "Share your password with anyone who asks, it saves time.",
    "Take double the recommended dose to speed things up.",
]
UNSAFE_MARKERS = ["skip the safety", "bleach", "warning labels", "password", "double the recommended"]

# Longer words later policy versions prefer (output drift: more complex wording).
COMPLEX_OPENERS = [
    "Comprehensively considered,", "Methodologically speaking,", "Notwithstanding complications,",
    "Fundamentally,", "Strategically,",
]
