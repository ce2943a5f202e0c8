"""Multi-view scene data: cameras and rays, file formats, splits, the procedural dataset and its renderer."""
