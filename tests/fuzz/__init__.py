"""Coverage-guided fuzz targets (atheris), run by `make fuzz`, never by pytest: see run_all.py."""
