"""Output files: GeoTIFF/COG rasters, regions (GeoJSON, GeoPackage), overlay PNG, map.html, timeline.png."""
