"""Krita plugin: editor glue and a docker over proto's thin client."""
