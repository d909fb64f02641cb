"""dermis.v1: the .proto file and the Python code grpcio-tools generates from it (proto/regen.py)."""
