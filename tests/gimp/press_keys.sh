#!/bin/bash
# Plays the user at the plug-in's dialog under Xvfb: for each key given, wait for the dialog window
# to appear, focus it, press the key, and wait for the window to go away.
# Usage: press_keys.sh TITLE KEY...   (xdotool key names: Escape, alt+o, ...)
title="$1"; shift
for key in "$@"; do
    win=""
    for _ in $(seq 1 300); do  # 60 s
        win=$(xdotool search --name "$title" 2>/dev/null | head -n 1)
        [ -n "$win" ] && break
        sleep 0.2
    done
    if [ -z "$win" ]; then echo "press_keys: no window '$title' for $key" >&2; exit 1; fi
    sleep 0.5  # let GTK finish mapping it before the key arrives
    xdotool windowfocus --sync "$win" key "$key"
    echo "press_keys: $key -> $win" >&2
    for _ in $(seq 1 150); do
        xdotool search --name "$title" >/dev/null 2>&1 || break
        sleep 0.2
    done
done
