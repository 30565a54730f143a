#!/bin/sh
# Regenerates console-demo-calibration.json: the console demo patient's own per-patient
# calibration, from a 74 h run-in of the same simulated patient (six 1 h prodromes and
# their attacks). Run from the repository root; takes about 15 min and 1.2 GB of
# temporary disk on a 2-core machine.
# The exclusions fit the compressed cycle: 2 h before an onset covers the 1 h prodrome,
# 8 h after covers the 4 h attack, 2 h postdrome and 2 h refractory period; the 1 h
# occurrence period is the prodrome.
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
neurostim sim --scenario console-demo-run-in --policy off --record "$work/run-in.edf"
neurostim calibrate "$work/run-in.edf" --out tui/demo/console-demo-calibration.json \
    --exclude-before-h 2 --exclude-after-h 8 --occurrence-periods-h 1 --horizon-min 5
