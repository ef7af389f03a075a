"""The demo's products, stores and channels, and how baskets are drawn from them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

# --- catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price_minor: int
    tags: tuple[str, ...] = ()

    @property
    def organic(self) -> bool:
        return "organic" in self.tags


def _p(sku: str, name: str, category: str, price: int, *tags: str) -> Product:
    return Product(sku, name, category, price, tags)


CATALOGUE: tuple[Product, ...] = (
    _p("1001", "Bio Bananen 1 kg", "produce", 199, "organic", "fairtrade"),
    _p("1002", "Äpfel Elstar 1 kg", "produce", 249, "regional"),
    _p("1003", "Bio Äpfel Boskoop 1 kg", "produce", 299, "organic", "regional"),
    _p("1004", "Rispentomaten 500 g", "produce", 199),
    _p("1005", "Bio Möhren 1 kg", "produce", 149, "organic", "regional"),
    _p("1006", "Kartoffeln festkochend 2,5 kg", "produce", 299, "regional"),
    _p("1007", "Bio Avocado", "produce", 129, "organic", "vegan"),
    _p("1008", "Zitronen 500 g", "produce", 149),
    _p("1009", "Salatgurke", "produce", 79),
    _p("1010", "Bio Babyspinat 250 g", "produce", 229, "organic"),
    _p("2001", "Roggenmischbrot 750 g", "bakery", 289),
    _p("2002", "Bio Dinkelbrot 500 g", "bakery", 349, "organic"),
    _p("2003", "Brötchen 6 Stück", "bakery", 179),
    _p("2004", "Buttercroissant", "bakery", 89),
    _p("2005", "Laugenbrezel", "bakery", 69),
    _p("2006", "Bio Vollkorntoast 500 g", "bakery", 229, "organic", "vegan"),
    _p("2007", "Apfelstrudel", "bakery", 399),
    _p("3001", "Bio Zartbitterschokolade 100 g", "snacks", 199, "organic", "fairtrade", "vegan"),
    _p("3002", "Kartoffelchips 175 g", "snacks", 179),
    _p("3003", "Fruchtgummi 200 g", "snacks", 119),
    _p("3004", "Bio Nussmischung 200 g", "snacks", 399, "organic", "vegan"),
    _p("3005", "Butterkekse 200 g", "snacks", 129),
    _p("4001", "Bio Vollmilch 1 l", "dairy", 129, "organic"),
    _p("4002", "H-Milch 1,5 % 1 l", "dairy", 99),
    _p("4003", "Bio Joghurt natur 500 g", "dairy", 119, "organic"),
    _p("4004", "Gouda jung 400 g", "dairy", 299),
    _p("4005", "Deutsche Markenbutter 250 g", "dairy", 239),
    _p("4006", "Bio Haferdrink 1 l", "dairy", 199, "organic", "vegan"),
    _p("4007", "Speisequark 500 g", "dairy", 109),
    _p("4008", "Bio Bergkäse 200 g", "dairy", 379, "organic", "regional"),
    _p("5001", "Mineralwasser 6 x 1,5 l", "drinks", 294),
    _p("5002", "Apfelschorle 1 l", "drinks", 119, "regional"),
    _p("5003", "Bio Orangensaft 1 l", "drinks", 279, "organic"),
    _p("5004", "Pils 6 x 0,33 l", "drinks", 499),
    _p("5005", "Riesling trocken 0,75 l", "drinks", 699, "regional"),
    _p("5006", "Bio Eistee Pfirsich 0,5 l", "drinks", 149, "organic"),
    _p("5007", "Cola 1,5 l", "drinks", 169),
    _p("6001", "Spülmittel 500 ml", "household", 149),
    _p("6002", "Öko-Waschmittel 1,5 l", "household", 799, "vegan"),
    _p("6003", "Küchenrolle 4 Rollen", "household", 299),
    _p("6004", "Toilettenpapier 8 Rollen", "household", 399),
    _p("6005", "Müllbeutel 35 l", "household", 199),
    _p("6006", "Bio Allzweckreiniger 1 l", "household", 349, "organic", "vegan"),
    _p("7001", "Bio Espresso Bohnen 1 kg", "coffee", 1699, "organic", "fairtrade"),
    _p("7002", "Kaffee gemahlen 500 g", "coffee", 899),
    _p("7003", "Bio Filterkaffee 500 g", "coffee", 749, "organic", "fairtrade"),
    _p("7004", "Kaffeekapseln 10 Stück", "coffee", 329),
    _p("7005", "Bio Grüntee 20 Beutel", "coffee", 279, "organic"),
    _p("7006", "Cappuccino to go", "coffee", 290),
    _p("8001", "Naturkosmetik Duschgel 250 ml", "cosmetics", 295, "organic", "vegan"),
    _p("8002", "Zahnpasta 75 ml", "cosmetics", 145),
    _p("8003", "Bio Gesichtscreme 50 ml", "cosmetics", 1295, "organic", "vegan"),
    _p("8004", "Shampoo 300 ml", "cosmetics", 345),
    _p("8005", "Deo Roller 50 ml", "cosmetics", 245),
    _p("8006", "Bio Lippenbalsam", "cosmetics", 395, "organic"),
    _p("8007", "Sonnencreme LSF 30 200 ml", "cosmetics", 995),
    _p("9001", "T-Shirt Bio-Baumwolle", "apparel", 1999, "organic", "fairtrade"),
    _p("9002", "Socken 3er-Pack", "apparel", 999),
    _p("9003", "Jeans Straight Fit", "apparel", 5999),
    _p("9004", "Kapuzenpullover", "apparel", 3999),
    _p("9005", "Einkaufstasche Bio-Baumwolle", "apparel", 499, "organic"),
    _p("9006", "Regenjacke", "apparel", 7999),
    _p("9007", "Sneaker", "apparel", 6999),
    _p("9008", "Wollschal", "apparel", 2499),
)

BY_CATEGORY: dict[str, tuple[Product, ...]] = {}
for _product in CATALOGUE:
    BY_CATEGORY[_product.category] = (*BY_CATEGORY.get(_product.category, ()), _product)

PHYSICAL_STORES = ("berlin-01", "berlin-02", "hamburg-01", "muenchen-01", "koeln-01", "leipzig-01")
STORES = (*PHYSICAL_STORES, "web", "app")
CHANNELS = ("pos", "web", "app", "phone")

# How likely each category is in a basket, per channel.
CATEGORY_WEIGHTS: dict[str, dict[str, float]] = {
    "pos": {
        "produce": 22,
        "bakery": 16,
        "dairy": 20,
        "drinks": 12,
        "snacks": 9,
        "coffee": 8,
        "household": 7,
        "cosmetics": 5,
        "apparel": 1,
    },
    "web": {"apparel": 30, "cosmetics": 22, "coffee": 18, "household": 16, "drinks": 8},
    "app": {"apparel": 22, "cosmetics": 20, "coffee": 22, "household": 14, "snacks": 10},
    "phone": {"coffee": 45, "apparel": 25, "household": 20, "cosmetics": 10},
}
BASKET_SIZES: dict[str, tuple[list[int], list[float]]] = {
    "pos": ([1, 2, 3, 4, 5, 6, 7, 8], [14, 18, 19, 16, 12, 9, 7, 5]),
    "web": ([1, 2, 3, 4], [45, 30, 17, 8]),
    "app": ([1, 2, 3, 4], [50, 28, 15, 7]),
    "phone": ([1, 2, 3], [60, 30, 10]),
}

CATEGORY_CUM = {
    channel: (list(weights), list(itertools.accumulate(weights.values())))
    for channel, weights in CATEGORY_WEIGHTS.items()
}
BASKET_CUM = {
    channel: (sizes, list(itertools.accumulate(weights)))
    for channel, (sizes, weights) in BASKET_SIZES.items()
}
SPLIT = {
    category: (
        tuple(p for p in products if p.organic),
        tuple(p for p in products if not p.organic),
    )
    for category, products in BY_CATEGORY.items()
}
