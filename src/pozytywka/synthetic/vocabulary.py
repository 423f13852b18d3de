"""Fixed vocabularies of the synthetic catalogue: genre families, their audio profiles, names."""

from __future__ import annotations

# Family -> fine-grained genres, as artists are tagged on a streaming service.
GENRE_FAMILIES: dict[str, list[str]] = {
    "pop": ["pop", "dance pop", "polish pop", "k-pop", "indie pop", "synthpop", "electropop"],
    "rock": ["rock", "classic rock", "polish rock", "indie rock", "alternative rock", "punk rock",
             "garage rock"],
    "hip hop": ["hip hop", "polish hip hop", "trap", "boom bap", "drill", "conscious hip hop",
                "polish trap"],
    "electronic": ["house", "techno", "deep house", "drum and bass", "dubstep", "trance",
                   "ambient"],
    "metal": ["metal", "heavy metal", "black metal", "death metal", "thrash metal", "metalcore"],
    "jazz": ["jazz", "smooth jazz", "bebop", "jazz fusion", "polish jazz", "vocal jazz"],
    "classical": ["classical", "baroque", "romantic era", "opera", "contemporary classical",
                  "chamber music"],
    "r&b": ["r&b", "neo soul", "soul", "funk", "contemporary r&b", "motown"],
    "folk": ["folk", "indie folk", "polish folk", "singer-songwriter", "americana", "celtic"],
    "latin": ["reggaeton", "latin pop", "salsa", "bachata", "latin trap", "cumbia"],
    "country": ["country", "country pop", "bluegrass", "outlaw country", "country rock"],
    "reggae": ["reggae", "dancehall", "dub", "roots reggae", "ska"],
}

# How common each family is among artists (relative weights).
FAMILY_WEIGHTS: dict[str, float] = {
    "pop": 5.0, "rock": 4.0, "hip hop": 4.0, "electronic": 3.0, "metal": 1.5, "jazz": 1.0,
    "classical": 1.0, "r&b": 2.0, "folk": 1.5, "latin": 1.5, "country": 1.0, "reggae": 0.7,
}


# Per family: mean of each 0-1 audio feature (in pozytywka.contract.AUDIO_FEATURES order),
# loudness dB, tempo BPM, duration in seconds and probability of explicit lyrics.
FAMILY_AUDIO_PROFILE: dict[str, tuple[list[float], float, float, float, float]] = {
    "pop": ([0.70, 0.68, 0.07, 0.20, 0.02, 0.15, 0.55], -6.0, 118.0, 205.0, 0.15),
    "rock": ([0.50, 0.78, 0.05, 0.12, 0.06, 0.20, 0.48], -6.5, 126.0, 235.0, 0.10),
    "hip hop": ([0.75, 0.65, 0.28, 0.15, 0.01, 0.18, 0.45], -6.5, 100.0, 200.0, 0.65),
    "electronic": ([0.68, 0.80, 0.06, 0.06, 0.60, 0.17, 0.38], -7.0, 125.0, 300.0, 0.03),
    "metal": ([0.40, 0.92, 0.08, 0.02, 0.10, 0.22, 0.30], -4.8, 135.0, 270.0, 0.20),
    "jazz": ([0.55, 0.38, 0.05, 0.65, 0.35, 0.18, 0.52], -11.0, 112.0, 290.0, 0.01),
    "classical": ([0.28, 0.18, 0.04, 0.92, 0.82, 0.12, 0.22], -20.0, 100.0, 360.0, 0.00),
    "r&b": ([0.66, 0.55, 0.10, 0.25, 0.02, 0.14, 0.55], -7.0, 105.0, 225.0, 0.30),
    "folk": ([0.50, 0.38, 0.04, 0.72, 0.05, 0.16, 0.45], -10.0, 115.0, 215.0, 0.02),
    "latin": ([0.76, 0.72, 0.09, 0.20, 0.01, 0.16, 0.72], -5.5, 110.0, 210.0, 0.20),
    "country": ([0.58, 0.62, 0.04, 0.30, 0.01, 0.18, 0.60], -6.5, 120.0, 200.0, 0.03),
    "reggae": ([0.78, 0.58, 0.12, 0.18, 0.05, 0.17, 0.75], -8.0, 95.0, 230.0, 0.05),
}

FIRST_NAMES = ["Anna", "Piotr", "Katarzyna", "Tomasz", "Magdalena", "Michał", "Agnieszka",
               "Jakub", "Aleksandra", "Paweł", "Zofia", "Krzysztof", "Julia", "Marcin", "Maria",
               "Kamil", "Natalia", "Łukasz", "Ewa", "Mateusz", "Oliwia", "Bartosz", "Hanna",
               "Wojciech", "Maja", "Adam", "Lena", "Szymon", "Alicja", "Filip"]
LAST_NAMES = ["Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński", "Lewandowski",
              "Zieliński", "Szymański", "Woźniak", "Dąbrowski", "Kozłowski", "Jankowski", "Mazur",
              "Kwiatkowski", "Krawczyk", "Piotrowski", "Grabowski", "Pawłowski", "Michalski"]
CITIES = ["Warszawa", "Kraków", "Wrocław", "Łódź", "Poznań", "Gdańsk", "Szczecin", "Lublin",
          "Bydgoszcz", "Białystok", "Katowice", "Gdynia", "Radom", "Toruń", "Rzeszów"]
STREETS = ["ul. Polna", "ul. Leśna", "ul. Słoneczna", "ul. Krótka", "ul. Szkolna", "ul. Ogrodowa",
           "ul. Lipowa", "ul. Brzozowa", "ul. Łąkowa", "ul. Kwiatowa", "ul. Kościuszki",
           "ul. Mickiewicza", "ul. Sienkiewicza", "ul. Piłsudskiego", "ul. Długa"]
NAME_WORDS = ["Night", "Echo", "Blue", "River", "Golden", "Silent", "Electric", "Wild", "Paper",
              "Neon", "Velvet", "Stone", "Summer", "Ghost", "Crystal", "Midnight", "Broken",
              "Fire", "Ocean", "Shadow", "Light", "Dream", "Storm", "Moon", "Wolf", "Heart",
              "City", "Rain", "Glass", "Star", "Żuraw", "Wiatr", "Sen", "Lato", "Miasto"]
