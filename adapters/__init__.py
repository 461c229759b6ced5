"""Ecosystem bridges of zg_asktell (installed as ``zg_asktell.adapters``)."""
