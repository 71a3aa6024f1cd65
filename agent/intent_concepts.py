"""A broader concept lexicon: things people name that are not land-cover classes, mapped to the nearest class.

Data only; `geodelta.agent.intent` reads it beside `intent_lexicon`. Same phrase format (comma separated
phrases, lower case, hyphens split, light plural stemming). Sources of the names: the CORINE legend
(`../shared/data/corine_ch/clc_legend.csv`), ESA WorldCover and Dynamic World class names, LEVIR-CC
captions, and what planners, farmers, insurers and hydrologists ask about. Nearest-class choices
(issue 16; also the labelling conventions of benchmarks/intent_questions_users.jsonl):
  car parks, airfields, ports, marinas, solar farms, greenhouses, camps, tracks  -> built_up (sealed or roofed)
  quarries, gravel pits, landfill, dump sites, wasteland, sparse vegetation        -> bare_ground
  orchards, olive groves, hedges, fruit trees, agro-forestry                       -> tree (woody cover)
  vineyards, vines, cultivation, farmed land                                       -> cropland
  sports pitches, golf courses, playing fields, field margins, verges, paddocks    -> low_vegetation (grass)
  flooded vegetation, herbaceous wetland, salt marsh, peat bog                     -> water + low_vegetation
Place words that only say where ("roadside", "floodplain", "riverbank") map to no class.
"""

from __future__ import annotations

V = ("tree", "low_vegetation", "cropland")
G = ("tree", "low_vegetation")
W = ("water", "low_vegetation")

CONCEPT_PHRASES: dict[tuple[str, ...], str] = {
    ("water",): "tide, watercourse, water course, flooded area, flood water, standing water, storm surge, sea and ocean, "
    "irrigation pond",
    ("tree",): "hedge, oil palm, palm, broadleaf, broadleaved, coniferous, deciduous, evergreen, forested, woody, olive, "
    "broad leaved, olive grove, fruit tree, agro forestry, agroforestry, mangrove forest, woody vegetation, "
    "tall vegetation, tall plant, tree stand, berry plantation, woodlot, tree nursery",
    ("low_vegetation",): "grassy, paddock, ranch, cattle, livestock, grazing, verge, tundra, common land, heather, hay, "
    "pasture hay, grassland herbaceous, shrub scrub, open shrubland, closed shrubland, savanna, pitch, golf, lawn, moss, lichen, "
    "herbaceous, shrubby, scrubby, bracken, weed, racecourse, cricket ground, rugby pitch, recreation ground, "
    "sports pitch, football pitch, playing field, sports field, "
    "sports ground, golf course, field margin, grass verge, low vegetation, short vegetation, low growing plant, "
    "low plant, short plant, short grass, herbaceous vegetation, herbaceous cover, sclerophyllous vegetation, "
    "natural grassland, grazing land, shrub and scrub, moss and lichen, low growing vegetation",
    ("cropland",): "cultivation, cultivated, farmed, vine, tillage, harvest, cover crop, irrigation, irrigated, terrace, allotment, centre pivot, center pivot, green field, cultivated land, cultivation pattern, "
    "permanently irrigated land, annual crop, permanent crop, hop garden, hop field, market garden",
    ("bare_ground",): "bare, bareland, wasteland, brownfield, landfill, dump, spoil, scree, pit, unvegetated, "
    "waste land, dump site, building site, gravel pit, sand pit, sparse vegetation, sparsely vegetated, bare rock, "
    "intertidal flat, tidal flat, tide flat, mud flat, beaches dunes and sand, mineral extraction, extraction site, mudslide, "
    "mudflow, rockfall, debris flow, dust bowl, dust, sandbar, sandbank, gravel bar, shoal, ash, salt pan, saltpan, "
    "salina, topsoil",
    ("built_up",): "airfield, airstrip, aerodrome, hangar, marina, port, dock, wharf, pier, terminal, hub, logistics, "
    "depot, camp, tent, track, path, bypass, junction, roundabout, bridge, polytunnel, tower, villa, property, "
    "school, office, hospital, mall, shop, stadium, fabric, rail, station, solar, cement, slum, shanty, favela, roof, "
    "rooftop, shelter, mill, resort, hotel, industrial park, science park, technology park, office park, trailer park, "
    "caravan park, holiday park, promenade, boardwalk, esplanade, quay, seafront, wall, sea wall, seawall, breakwater, groyne, jetty, levee, dyke, dike, embankment, shed, barn, hut, dwelling, homestead, turbine, square, plaza, "
    "distribution centre, distribution center, wind turbine, solar array, farm building, impervious, sealed, "
    "impervious surface, sealed surface, paved surface, artificial surface, peri urban, cycle path, bike lane, "
    "retail park, ring road, tower block, urban fabric, commercial unit, rail network, refugee camp, port area, "
    "built area, built up, industrial zone, logistics hub, trading estate",
    V: "green, natural cover",
    ("low_vegetation", "cropland"): "green belt, greenbelt",
    W: "reed, reeds, saltmarsh, wetland meadow, wet meadow, water meadow, flood meadow, flooded vegetation, herbaceous wetland, salt marsh, peat bog, inland marsh, reed bed, woody wetland, "
    "emergent herbaceous wetland, permanent wetland",
    G: "woody savanna, natural vegetation mosaic",
}

# Regional and everyday names (gazetteers, field guides, planning and estate vocabulary), issue 16: wordllama's
# similarity is spelling-level for rare words ("taiga" -> tundra 0.19, "tarn" -> tarmac 0.32), so they are listed.
REGIONAL_PHRASES: dict[tuple[str, ...], str] = {
    ("water",): "tarn, billabong, lough, pool, oxbow, slough, backwater, millpond, cenote, fjord, fiord, cove, firth, brook, "
    "rivulet, rill, beck, waterhole, impoundment, lakelet, pondage, oxbow lake, mill pond, retention pond, detention basin, "
    "settling pond, tailings pond, quarry lake, glacial lake, river mouth, water surface, open sea, watering hole, "
    "vernal pool, playa lake, salt lake, floodwaters, flood waters",
    ("tree",): "spinney, coppice, taiga, shelterbelt, windbreak, bosque, teak, eucalyptus, acacia, poplar, birch, beech, "
    "spruce, fir, larch, cedar, cypress, willow, alder, mangal, timberland, arboretum, rubber, treeline, "
    "boreal forest, tree belt, riparian forest, gallery forest, cloud forest, plantation forest, tree farm, forest stand, "
    "wood pasture, wet woodland, carr",
    ("low_vegetation",): "thicket, cerrado, chaparral, maquis, garrigue, fynbos, sagebrush, gorse, furze, brush, brushland, "
    "bushveld, veld, veldt, pampas, llanos, meadowland, hayfield, sward, turf, sedge, marram, downland, machair, "
    "glade, greensward, campo, grass verge, hay meadow, rough pasture, dune grass, marram grass, shrub steppe, "
    "grazing marsh, field edge",
    ("cropland",): "soya, sorghum, millet, cassava, manioc, potato, beet, rapeseed, canola, oilseed, sunflower, alfalfa, "
    "lucerne, tobacco, tea, coffee, cocoa, cacao, banana, pineapple, hops, vegetable, horticulture, oats, rye, grain, "
    "cereal, smallholding, sugar beet, crop land, farm plot, cash crop, row crop, tea plantation, coffee farm, "
    "coffee plantation, cocoa plantation",
    ("bare_ground",): "playa, badlands, outcrop, talus, moraine, lava, tephra, shingle, earthworks, earthwork, tailings, "
    "peat, opencast, pan, desert pavement, rock outcrop, lava flow, bare earth, cleared land, spoil heap, slag heap, "
    "mine tailings, open cast, strip mining, dry riverbed, dry lake bed",
    ("built_up",): "bungalow, cottage, hamlet, farmstead, duplex, townhouse, condo, condominium, tenement, highrise, "
    "subdivision, township, shantytown, compound, campus, supermarket, store, garage, driveway, sidewalk, taxiway, apron, "
    "heliport, shipyard, dockyard, refinery, substation, pylon, windfarm, glasshouse, silo, piggery, church, "
    "mosque, temple, prison, barracks, railroad, tram, freeway, expressway, interstate, avenue, boulevard, alley, "
    "overpass, flyover, interchange, causeway, university, arena, racetrack, velodrome, feedlot, row house, high rise, "
    "housing development, informal settlement, parking garage, petrol station, gas station, service station, "
    "power plant, power station, wind farm, container terminal, rail yard, military base, data centre, data center, "
    "sports hall, leisure centre, motorway services, car dealership, apartment block, office block, business district",
    G: "garden, back garden, private garden, savannah woodland, savanna woodland, wooded grassland, parkland savanna",
    W: "bayou, muskeg, swampland, quagmire, marshland, floodplain wetland, riparian wetland, tidal marsh, mangrove swamp",
}

# Words that say where, not what: never a class, never sent to the embedding fallback.
PLACE_WORDS = frozenset("roadside riverside lakeside wayside hillside floodplain riverbank bank banks valley hill hills "
                        "plain coast coastline coastal shore shoreline inland edge outskirts fringe lane slope level landscape".split())
# People, weather and events: who or what caused it, never a land-cover class (not sent to the embedding fallback).
PEOPLE_AND_WEATHER = frozenset("villager resident farmer people owner local community neighbour neighbor family "
                               "government authority hurricane typhoon cyclone monsoon storm rain rains snowmelt "
                               "tornado hail earthquake tsunami drought breach breached".split())

# Modifiers that narrow a vegetation mention ("short, low-growing plants"; "tall woody vegetation").
LOW_MODIFIERS = frozenset("low short herbaceous scrubby shrubby grassy growing lying".split())
TALL_MODIFIERS = frozenset("tall high mature woody".split())

# Negation and exclusion. ABSENCE: "without any plants", "no vegetation" (absence of vegetation is bare ground).
ABSENCE = frozenset("without no lacking lacks treeless plantless free devoid".split())
# "no trees left", "no water anymore": after an absence word these make it a loss, not bare ground.
LOSS_AFTER = frozenset("anymore left remaining remain remains longer".split())
# EXCLUDE: the next mention is left out ("other than crops" narrows the mention before it).
EXCLUDE_PHRASES = ("other than", "apart from", "aside from", "except for", "except", "excluding", "exclude",
                   "not counting", "not including", "ignore", "ignoring", "but not", "not the", "and not",
                   "not interested in", "don t care about", "do not care about", "dont care about",
                   "never mind", "forget", "leave out", "leaving out", "besides", "not")
# "pitches were built on the fields": a creation verb right after a mention says that mention is new.
# "X taken over by Y", "overgrown with Y": X before, Y after (checked before any other connector).
PASSIVE_PHRASES = ("taken over by", "overrun by", "overrun with", "overgrown with", "overgrown by", "invaded by",
                   "colonised by", "colonized by", "encroached by", "hit by", "damaged by", "struck by", "flooded by",
                   "drowned by", "engulfed by", "replaced by", "buried by", "covered by", "covered with", "covered in")
CREATION = frozenset(("built", "build", "constructed", "built on", "built up"))
CREATION_GAP = frozenset("been be were was is are get got gets being have has had newly recently just".split())
# What an excluded mention takes away: "vegetation but not farmland" keeps grass (farmland's pasture is grass too).
EXCLUDED_AS = {("cropland", "low_vegetation"): ("cropland",)}
# "Leave the buildings aside" / "roads aside": the mention before "aside".
EXCLUDE_AFTER = ("aside",)
# The mention after these only says where ("houses along the road", "pits near the river").
LOCATIVE_PHRASES = ("along", "alongside", "near", "nearby", "beside", "next to", "close to", "around",
                    "opposite", "behind", "at the edge of", "on both sides of", "on the side of")
# The mention after these is a cause or a time ("grow back after logging"), dropped when another is named first.
CLAUSE_PHRASES = ("after", "following", "since", "due to", "because of")
# Verbs that make "in / across / through / among" mean "on former X" ("a road cut across the fields").
APPEAR_VERBS = frozenset("appear appeared appearing cut built build constructed put popped sprang sprung emerged "
                         "developed established erected laid opened form formed forming show showed shows shown "
                         "appears carve carved carving".split())
PLACEMENT_WORDS = frozenset("in across through inside within among amid throughout".split())

# Phenomena that name a transition without naming both classes (regex over lower-cased text -> canonical text).
PHENOMENA: tuple[tuple[str, str], ...] = (
    # shore / coast / bank retreat or erosion: the water moved onto the land
    (r"\b(shore|shoreline|coast|coastline|coastal|beach(?:es)?|cliffs?|banks?|riverbanks?|dunes?)\b(?:\s+\w+){0,3}?\s+"
     r"(?:retreat\w*|reced\w*|erod\w*|erosion|wash\w*\s+away|wore\s+away|worn\s+away|collaps\w*)", r" \1 sea advance "),
    (r"\b(?:coastal|shore|beach|bank|cliff)\s+(?:erosion|retreat|loss)", " sea advance "),
    (r"\berod\w*\s+(?:its|their|the)?\s*(?:banks?|shores?|coast\w*|cliffs?|beach\w*)", " sea advance "),
    (r"\b(?:sea|ocean|water|tide|coast\w*|shore\w*)\b(?:\s+\w+){0,2}?\s+(?:advanc\w*|mov\w*|shift\w*|push\w*|crept|creep\w*|"
     r"encroach\w*)\s+inland",
     " sea advance "),
    # land won from the water
    (r"\b(?:delta|coast\w*|shore\w*|land|beach\w*|spit|sandbank)\b(?:\s+\w+){0,2}?\s+(?:grow\w*|grew|grown|advanc\w*|extend\w*|"
     r"build\w*\s+out|prograd\w*)\s+(?:out\s+)?(?:into|seaward\w*)", " water retreat "),
    (r"\b(?:gain\w*|reclaim\w*|won|win)\s+(?:\w+\s+){0,2}?from\s+the\s+(?:sea|ocean|lake|water|river)", " water retreat "),
    # a water body that drops and exposes its bed
    (r"\bexpos\w*\s+(?:the\s+)?(?:bed|riverbed|lakebed|bottom|mud|sand|shore)\b", " leaving bare ground "),
    # rivers leaving their bed
    (r"\b(?:burst|broke|break|overtop\w*|spill\w*\s+over|left|leave|leaves|jumped|jump)\s+(?:its|their|the)\s+"
     r"(?:banks?|beds?|channels?)", " flooded "),
    (r"\boverflow\w*", " flooded "),
    (r"\b(?:gone|went|go|is|are|was|were)\s+under\s+water\b", " flooded "),
    # fields left unused
    (r"\b(?:went|go|gone|left|lay|lie|lying)\s+(?:un\s?planted|unsown|idle|fallow)\b", " left fallow "),
    (r"\b(?:un\s?planted|unsown|no\s+longer\s+(?:cultivated|planted|cropped)|set\s+aside)\b", " left fallow "),
    (r"\bno\s+longer\b", " lost "),
    # flooding verbs used on things ("the floods swamp the villages")
    (r"\b(flood\w*|river|sea|water)\s+swamp(?:ed)?\b", r" \1 flooded "),
    (r"\bswamped\b", " flooded "),
    (r"\bstripped?\s+(?:the\s+)?(\w+)\s+bare\b", r" turned \1 to bare "),
    (r"\bslash\W+and\W+burn\b", " "),  # a farming practice, not a fire to map
    (r"\bflood\s+plains?\b", " floodplain "),  # a place, not a flood
    (r"\b(?:that|which)\s+(?:was|were|used\s+to\s+be)\s+(?!\w+ed\b)", " on former "),  # "now built up that was cropland"
    (r"\b(?:bigger|larger|grow\w*|expand\w*|increase\w*|gain\w*)\s+or\s+(?:smaller|shr[iu]nk\w*|decrease\w*|los\w*)\b",
     " changed "),  # "did the lake get bigger or smaller"
    (r"\b(?:smaller|shr[iu]nk\w*|decrease\w*|los\w*)\s+or\s+(?:bigger|larger|grow\w*|expand\w*|increase\w*|gain\w*)\b",
     " changed "),
    (r"\b(?:dry|dried|empty)\s+(lake|pond|reservoir|creek|stream|river)(s?)\b(?!\s+bed)", r" \1\2 "),  # "the dry lake refilled"
    (r"\b(?:grown|grew|grow|growing)\s+over\b", " overgrown with weeds "),  # "ponds silted up and grown over"
    (r"\b(?:filled|fill|filling)\s+in\b", " removed "),  # "the canal was filled in"
    (r"\b(?:filled|fill|fills|filling)\s+up\b", " grew "),  # "the new lake filled up"
    (r"\b(?:slopes?|hillsides?|hills?|mountainsides?)\s+(?:collaps\w*|gave\s+way|slid|slump\w*)", " landslide "),
    (r"\b(?:changes|differences|change|difference)\s+(?:to|in|of|around|near|at)\b", " changes "),
    # "where the woods were", "where there used to be a lake": what was there before
    (r"\bwhere\s+there\s+(?:was|were|used\s+to\s+be|had\s+been|once\s+was)\s+(?:an?\s+|some\s+)?", " on former "),
    (r"\bwhere\s+(?:the\s+)?(?!(?:they|it|we|you|i|there|these|those|he|she)\b)([a-z]+(?:\s[a-z]+)?)\s+(?:were|was|used\s+to\s+be|stood|had\s+been|once\s+stood)\b",
     r" on former \1 "),
    (r"\b(?:happen\w*|became|become|becomes)\s+(?:to|of)\b", " happened "),  # "what happened to the forest"
    (r"\b(?:went|go|gone|going)\s+up\s+in\s+(?:smoke|flames)\b", " burned "),
)
