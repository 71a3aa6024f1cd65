"""Reading inputs: image files, band roles, Sentinel-2 folders, STAC items, the pixel grid and windows."""
