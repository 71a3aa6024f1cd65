"""The embedded planner's word lists: phrases -> land-cover classes, direction cues, connectors.

Data only; `geodelta.agent.intent` reads it (with the broader concept lexicon of `intent_concepts`, which
never overrides a phrase here). Phrases are lower case and space separated (hyphens are
split before matching) and are matched longest-first after a light plural stemming, so "lakes" hits
"lake". Words not listed here reach the vocabulary through wordllama similarity to these phrases.
Grouping conventions (also used by benchmarks/intent_questions.jsonl):
  farmland / agriculture / farming  -> cropland + low_vegetation (pasture is farmland too)
  field(s), crops, arable, paddies  -> cropland
  vegetation / greenery              -> tree + low_vegetation + cropland
  green space                        -> tree + low_vegetation
  wetland / marsh / swamp            -> water + low_vegetation (a mix, not a class of its own)
  fire / burn scars                  -> to bare_ground (from tree + low_vegetation unless named)
"""

from __future__ import annotations

F = ("cropland", "low_vegetation")
V = ("tree", "low_vegetation", "cropland")
G = ("tree", "low_vegetation")
W = ("water", "low_vegetation")

# phrase -> classes, no role of its own (the sentence decides before/after).
CLASS_PHRASES: dict[tuple[str, ...], str] = {
    ("water",): "water lake river reservoir pond sea ocean stream creek canal lagoon bay estuary dam pool channel "
    "waterway floodwater harbour harbor inlet loch mere, water body, waterbody, open water, surface water, fish pond, "
    "fish farm, aquaculture, shrimp pond, river bed",
    ("tree",): "forest tree wood woods woodland jungle rainforest canopy orchard plantation mangrove grove timber copse "
    "conifer pine oak treeline hedgerow, tree cover, forest cover, tree plantation, palm oil",
    ("low_vegetation",): "grassland grass meadow pasture scrub shrub shrubland heath heathland savanna savannah prairie "
    "steppe lawn park parkland rangeland moor moorland bush bushland undergrowth, cattle pasture, grazing land, "
    "rough grassland",
    ("cropland",): "cropland crop arable field paddy wheat corn maize rice soy soybean barley vineyard sugarcane cotton, "
    "crop field, arable land, arable field, rice paddy, rice field, farm field, irrigated field",
    F: "farmland farm farming agriculture agricultural countryside, agricultural land, rural land",
    ("bare_ground",): "soil sand dune desert rock gravel dirt earth mud mudflat quarry mine mining excavation beach "
    "barren, bare ground, bare soil, bare land, barren land, sand dune, exposed earth, exposed soil, open pit, "
    "strip mine, construction site, salt flat, landslide",
    ("built_up",): "building house housing home city town village urban settlement suburb neighbourhood "
    "neighborhood residential commercial industrial factory warehouse road highway motorway street airport runway "
    "railway infrastructure estate apartment skyscraper greenhouse pavement concrete asphalt tarmac, "
    "built up area, urban area, parking lot, car park, housing estate, solar farm, solar park, solar panel, "
    "industrial estate, business park",
    V: "vegetation greenery plant, green cover, vegetation cover, plant cover",
    G: "greenspace, green space, green area",  # no single words: "green" alone is vegetation (intent_concepts)
    W: "wetland marsh swamp bog fen mire, reed bed",
}

# phrase -> (classes, role): words that name a class AND say which side of the change it is on.
ROLE_PHRASES: dict[str, tuple[tuple[str, ...], str]] = {}
for _p in ("built over, built on, built up, paved over, paved, concreted over, concreted, developed, development, "
           "urbanisation, urbanization, urbanised, urbanized, urban sprawl, sprawl, sprawled, sprawling, construction, "
           "constructed, build, built, new housing, culverted, culvert, piped, land take, soil sealing, sealing, redeveloped, redevelopment, redevelop, rebuilt, rebuild").split(", "):
    ROLE_PHRASES[_p] = (("built_up",), "to")
for _p in ("flood, flooded, flooding, inundated, inundation, waterlogged, submerged, under water, sea advance, "
           "overflowed, overflowing, inundate, drown, drowned, drowning, submerge").split(", "):
    ROLE_PHRASES[_p] = (("water",), "to")
ROLE_PHRASES["water retreat"] = (("water",), "from")  # land won from the sea (intent_concepts.PHENOMENA)
for _p in "plough, ploughed, ploughing, plowed, plowing, tilled, ploughed up, plough up, plowed up".split(", "):
    ROLE_PHRASES[_p] = (("cropland",), "to")
for _p in ("deforestation, deforested, logging, logged, logger, clear cut, clearcut, clear cutting, clearcutting, tree loss, "
           "forest loss").split(", "):
    ROLE_PHRASES[_p] = (("tree",), "from")
for _p in "reforestation, afforestation, reforested, afforested, tree planting, planted tree".split(", "):
    ROLE_PHRASES[_p] = (("tree",), "to")
for _p in "vegetated, revegetated, greener, greening, greened".split(", "):
    ROLE_PHRASES[_p] = (V, "to")
for _p in "desertification, desertified, browning, browned, land degradation".split(", "):
    ROLE_PHRASES[_p] = (("bare_ground",), "to")
for _p in "wetter, waterlogging, ponding".split(", "):
    ROLE_PHRASES[_p] = (("water",), "to")
# fire: burnt ground reads as bare ground; the "from" side defaults to tree + low_vegetation.
FIRE_PHRASES = ("burn, burned, burnt, burning, fire, wildfire, bushfire, forest fire, burn scar, fire scar, "
                "scorched, charred, blaze, burnt area, burned area").split(", ")
FIRE_FROM = G
# phrase -> (from classes, to classes): a whole transition in one phrase.
TRANSITION_PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    p: (("cropland",), ("bare_ground", "low_vegetation"))
    for p in "fields left fallow, field left fallow, fallow field, fallow land, left fallow, fallow".split(", ")
} | {p: (("cropland",), ("bare_ground",)) for p in "harvested, harvesting, reaped".split(", ")}

# Classes outside the vocabulary: ask back, offering the closest reading.
OUT_OF_VOCABULARY: dict[str, str] = {
    p: "snow and ice" for p in "glacier, ice, ice shelf, ice cap, sea ice, snow, snowpack, snow cover, snowfield, permafrost".split(", ")
} | {p: "clouds" for p in "cloud, cloud cover".split(", ")}
OFF_WORLD = frozenset("mars martian moon lunar venus jupiter saturn pluto neptune uranus asteroid".split())

APPEAR = frozenset("new newly appear appeared appearing appearance grow grew grown growing growth expand expanded "
                   "expanding expansion spread spreading increase increased increasing gain gained emerge emerged "
                   "more arise arisen rise rose extend extended enlarge enlarged regrow regrew regrown regrowth "
                   "recover recovered advance advanced encroach encroached added created establish established "
                   "planted formed widen widened swell swelled swollen sprung popped lush denser thicker thickened regenerate "
                   "regenerated regenerating restored restore restoration refilled refill refilling replenished "
                   "overgrown infill dug dig excavated replanted replanting sprouted mushroomed proliferated "
                   "multiplied densified intensified colonised colonized materialised materialized erected installed "
                   "rebounded flourished thrived arrived returned".split())
DISAPPEAR = frozenset("disappear disappeared disappearing disappearance lost lose loss losing shrink shrank shrunk "
                      "shrinking shrinkage decline declined decrease decreased reduce reduced reduction vanish "
                      "vanished gone go went removed removal cleared clearing cut felled destroyed destruction "
                      "retreat retreated recede receded dried dry drained draining drought demolished demolition "
                      "torn razed abandoned fewer less stripped diminished erode eroded erosion melt melted bulldozed "
                      "flattened wiped knocked washed uprooted levelled leveled dropped drop fell fall falling sank "
                      "thinned die died dying withered wither smaller narrower tinier rip ripped pulled wipe knock thin grubbed eradicated obliterated erased annihilated decimated "
                      "devastated ravaged contracted contraction dwindled dwindling narrowed evaporated desiccated "
                      "depleted chopped hacked dismantled gutted collapsed beating battered anymore stop stopped ceased cease empty emptied emptying abandonment abandon degradation degraded silted silt silting "
                      "consumed".split())
# Growth words that are also size words ("bigger than 2 ha" is read as a size first, so what is left is growth).
GROWTH_COMPARATIVES = frozenset("bigger larger greater wider".split())
APPEAR_PHRASES = ("go in", "went in", "gone in", "put in", "going in", "go up", "went up", "gone up", "popped up", "pop up", "sprung up", "sprang up", "put up", "set up",
                  "going up", "springing up", "came up", "come in", "came in", "coming in", "coming back", "comes back", "show up", "showed up", "shows up", "grow back", "grew back", "come back", "came back")
GENERIC_CHANGE = frozenset("change changed changes changing different difference differences happen happened "
                           "happening altered alteration transformed transformation modified anything doing compare".split())
# Questions about what stayed the same: a ChangeQuery names changes only, so these are asked back.
STABLE_PHRASES = ("nothing change", "nothing changed", "no change", "unchanged", "stayed the same", "remained the same",
                  "stay the same", "did not change", "didn t change", "not changed", "stayed intact", "remained intact")
# Requests that are not about land change at all: asked back, never read as a query.
OFF_TOPIC = frozenset("poem joke story song recipe weather forecast translate essay limerick haiku".split())

# Connectors between two class mentions. forward: first -> second; reverse: second -> first.
REVERSE_PHRASES = ("at the expense of", "instead of", "in place of", "used to be", "took over", "take over",
                   "taken over", "eat into", "ate into", "eaten into", "eat away", "ate away", "eaten away",
                   "eating away", "eating into", "cleared from", "carved out of", "carved from",
                   "cut out of", "won from", "taken from", "reclaimed from", "cleared out of",
                   "clear the", "clears the", "cleared the", "cleared away the", "rather than", "take the place of",
                   "took the place of", "taken the place of", "in the place of")  # "farmers cleared the forest"
FORWARD_PHRASES = ("replaced by", "replaced with", "gave way to", "give way to", "made way for", "make way for",
                   "lost to", "turned into", "turned to", "converted to", "converted into", "changed to", "changed into",
                   "buried by", "buried under", "covered by", "covered with", "destroyed by", "swallowed by",
                   "given over to", "handed over to", "given up to", "made into", "receded from", "recede from",
                   "retreated from", "withdrew from", "drained from", "drained off")
REVERSE_WORDS = frozenset("cover covered covering swallowed swallow replaced replace invaded invade overtook "
                          "overtaken engulfed encroached former old formerly previously replacing replaces bury buried buries hit hits struck damaged "
                          "overran overwhelmed scar scars scarred claim claims claimed consume consumed consumes "
                          "consuming devour devoured overrun reclaim reclaims eating eats erode erodes eroded eroding wipe wiped "
                          "wipes".split())
# Prepositions that mean "on top of the former X"; weaker than a forward verb ("the grass on the left became a road").
REVERSE_PREPOSITIONS = frozenset("on onto over upon".split())
FORWARD_WORDS = frozenset("to into become became becoming turned turn converted conversion for leaving now then "
                          "giving".split())
EXPANSION_VERBS = frozenset("expand expanded expanding spread spreading sprawl sprawled sprawling grow grew grown "
                            "advance advanced encroach encroached eat ate creep crept push pushed move moved extend "
                            "extended invade invaded rise rose risen rising expansion".split())
CONJUNCTIONS = frozenset("and or nor plus & , as well the a an some other new".split())

# Area words (sectors of the scene frame, north up).
VERTICAL = {"north": "north", "northern": "north", "top": "north", "upper": "north",
            "south": "south", "southern": "south", "bottom": "south", "lower": "south"}
HORIZONTAL = {"west": "west", "western": "west", "left": "west", "east": "east", "eastern": "east", "right": "east"}
COMPOUND_SECTORS = {w + s: f"{v}-{h}" for v in ("north", "south") for h in ("west", "east") for w, s in
                    ((v + h, ""), (v + h, "ern"))}
CENTRE = frozenset("centre center middle central".split())
# "<word> centre" names a place or building, not the centre of the scene.
CENTRE_OF_A_PLACE = frozenset("distribution shopping town city garden business community sports leisure visitor data "
                              "health medical logistics fulfilment fulfillment retail conference civic village".split())
CENTRE_OF_A_THING = frozenset("pivot pivots line lines point".split())  # "centre-pivot irrigation", "centre line"
PART_WORDS = frozenset("half part third quarter edge side corner portion section area bit of region".split())
WEAK_SECTOR_WORDS = frozenset("top bottom upper lower left right".split())

REPORT_CUES = {
    "how_much": ("how much", "how big", "how large", "area", "extent", "hectare", "size"),
    "count": ("how many", "number of", "count"),
    "where": ("where", "which part", "locate", "location"),
    "what": ("what kind", "what type", "what did", "into what", "what was"),
    "when": ("when",),
    "map": ("map", "show", "draw", "plot", "display"),
}

# Words never sent to the embedding fallback (function words and question noise).
STOPWORDS = frozenset(
    "a an the and or of in on at to for from by with into onto over under between within inside across near about "
    "around than then that this these those there here where when what which who how why whether is are was were be "
    "been being has have had do did does done get got gets getting can could would should will shall may might must "
    "i me my we our you your it its they them their he she his her any all some only just also still since ever "
    "very much many most more less few not no yes please thanks thank show tell give gimme find identify list see "
    "look let know need want like yo hey hi ok okay so if as up down out off again anywhere everywhere somewhere "
    "image images picture pictures photo scene scenes date dates time year years month summer winter spring autumn "
    "fall last first second earlier later before after between compared comparison part parts spot spots place "
    "places region regions area areas zone land bit side half third quarter corner edge report writing municipality "
    "storm ones one two patch patches piece pieces kind type types all at least whole entire total amount size "
    "big bigger large larger small smaller greater great ha m km acre acres hectare hectares metre metres meter "
    "meters square sq".split()
)
