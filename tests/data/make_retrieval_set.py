#!/usr/bin/env python3
"""Writes retrieval_set.json: 250 facts about 50 invented people and, for
each, a question in other words that only that fact answers.

Many people share the same kinds of fact (a job, a pet, a town), so a
question is answered by the right person's fact only: the name must match
(what keyword search is good at) and the kind of fact must be understood
from other words (what vector search is good at). Deterministic (seed 7);
written for statewise, CC0.

    python3 tests/data/make_retrieval_set.py > tests/data/retrieval_set.json
"""
import json
import random

rng = random.Random(7)

NAMES = """Marta Kowalski, Tomasz Nowak, Aisha Bello, Kenji Watanabe, Lucia Ferreira,
Omar Haddad, Ingrid Larsen, Diego Alvarez, Priya Raman, Samuel Okafor,
Elena Petrova, Hugo Lefebvre, Nadia Rahman, Liam O'Connor, Mei Lin,
Rafael Costa, Greta Schmidt, Yusuf Demir, Chloe Martin, Arjun Mehta,
Sofia Rossi, Jonas Berg, Amara Nwosu, Mateo Silva, Hana Novak,
Victor Dubois, Leila Karimi, Felix Wagner, Zara Ahmed, Nikolai Ivanov,
Rosa Jimenez, Emil Andersen, Fatima Zahra, Oscar Lindqvist, Ines Moreau,
Kwame Mensah, Julia Horvath, Ravi Shankar, Alba Romero, Pieter de Vries,
Yara Haddad, Bruno Carvalho, Anika Bose, Tobias Keller, Noor Hussain,
Carmen Ortiz, Lukas Brenner, Aiko Tanaka, Stefan Popescu, Lina Sorensen"""
PEOPLE = [n.strip() for n in NAMES.replace("\n", " ").split(",")]

PETS = ["dog", "cat", "parrot", "rabbit", "tortoise", "hamster"]
PET_NAMES = ["Biscuit", "Pepper", "Mango", "Olive", "Ziggy", "Nugget", "Clover", "Rocket"]
TOWNS = ["Lisbon", "Gdansk", "Leeds", "Porto", "Lyon", "Utrecht", "Bergen", "Graz", "Turin", "Cork"]
JOBS = ["nurse", "carpenter", "accountant", "pilot", "librarian", "plumber", "dentist", "chef"]
HOBBIES = ["rock climbing", "sailing", "birdwatching", "pottery", "chess", "salsa dancing"]
FOODS = ["peanuts", "shellfish", "strawberries", "sesame", "eggs", "wheat"]
CARS = ["a red hatchback", "a green van", "a grey pickup", "a blue estate car", "a white scooter"]
INSTRUMENTS = ["cello", "trumpet", "accordion", "harp", "saxophone", "ukulele"]
MONTHS = ["January", "March", "May", "July", "September", "November"]
DISHES = ["mushroom risotto", "lamb tagine", "fish tacos", "beef stew", "pad thai", "spinach pie"]
LANGS = ["Finnish", "Portuguese", "Japanese", "Swahili", "Greek", "Korean"]
TEAMS = ["the local rowing club", "a choir", "a hiking group", "a book club", "a volleyball team"]


def first(name):
    return name.split()[0]


# Each kind: how the fact is told, and two ways of asking for it that
# share no content word with the fact but the person's first name.
KINDS = {
    "pet": (lambda n: f"{n} has a {rng.choice(PETS)} called {rng.choice(PET_NAMES)}.",
            [lambda f: f"What is the name of {f}'s animal?",
             lambda f: f"Does {f} look after any creature at home?"]),
    "town": (lambda n: f"{n} lives in {rng.choice(TOWNS)}.",
             [lambda f: f"Which city is {f}'s home?",
              lambda f: f"Where does {f} reside?"]),
    "job": (lambda n: f"{n} works as a {rng.choice(JOBS)}.",
            [lambda f: f"What does {f} do for a living?",
             lambda f: f"What is {f}'s occupation?"]),
    "hobby": (lambda n: f"{n} practises {rng.choice(HOBBIES)} at weekends.",
              [lambda f: f"How does {f} spend Saturdays and Sundays?",
               lambda f: f"What pastime does {f} enjoy?"]),
    "allergy": (lambda n: f"{n} is allergic to {rng.choice(FOODS)}.",
                [lambda f: f"Which food must {f} avoid?",
                 lambda f: f"What makes {f} sick when eaten?"]),
    "car": (lambda n: f"{n} drives {rng.choice(CARS)}.",
            [lambda f: f"What vehicle does {f} own?",
             lambda f: f"How does {f} get around by road?"]),
    "music": (lambda n: f"{n} plays the {rng.choice(INSTRUMENTS)}.",
              [lambda f: f"Which musical instrument does {f} know?",
               lambda f: f"What can {f} perform songs on?"]),
    "birthday": (lambda n: f"{n} was born in {rng.choice(MONTHS)}.",
                 [lambda f: f"When is {f}'s birthday?",
                  lambda f: f"In which month does {f} celebrate getting older?"]),
    "dish": (lambda n: f"{n}'s favourite meal is {rng.choice(DISHES)}.",
             [lambda f: f"What food does {f} like best?",
              lambda f: f"Which dinner would please {f} most?"]),
    "language": (lambda n: f"{n} is learning {rng.choice(LANGS)}.",
                 [lambda f: f"Which tongue is {f} studying?",
                  lambda f: f"What language course is {f} taking?"]),
    "club": (lambda n: f"{n} is a member of {rng.choice(TEAMS)}.",
             [lambda f: f"Which group does {f} belong to?",
              lambda f: f"What society has {f} joined?"]),
}

pairs = []
for person in PEOPLE:
    for kind in rng.sample(sorted(KINDS), 5):
        tell, asks = KINDS[kind]
        pairs.append({
            "id": f"p{len(pairs)}",
            "kind": kind,
            "passage": tell(person),
            "question": rng.choice(asks)(first(person)),
        })

json.dump({
    "source": "Invented for statewise by tests/data/make_retrieval_set.py (seed 7).",
    "licence": "CC0-1.0",
    "pairs": pairs,
}, __import__("sys").stdout, indent=1, ensure_ascii=False)
print()
