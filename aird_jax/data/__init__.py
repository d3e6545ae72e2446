"""Data: face extraction (mtcnn, faces, extract), dataset builders, record selection (index),
input pipeline, preprocessing, augmentations, degradations."""
