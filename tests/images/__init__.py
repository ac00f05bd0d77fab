"""Tests of images: content store, pull, push, save/load, commit, sizes."""
