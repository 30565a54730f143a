"""Package data of the console demo: its patient's calibration and the script that makes it."""
