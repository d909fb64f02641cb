"""GIMP 3 plug-in: a procedure and a dialog over proto's thin client."""
