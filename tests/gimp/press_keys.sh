#!/bin/bash
# Plays the user in GIMP's GUI under Xvfb, one step after the other:
#   dialog:KEY          wait for the plug-in's dialog ($DIALOG_TITLE), focus it, press KEY
#                       (xdotool key names: Escape, alt+o, ...), wait for it to close
#   file:PATH           wait until PATH exists (the driver says it is ready for the next step)
#   window:TITLE:KEY    focus the visible window whose title contains TITLE and press KEY
#   done:PATH           tell the test the steps so far are done: write PATH (a second after the
#                       last key, so that GIMP has acted on it)
#   shown:PATH          wait for the dialog, then write its geometry (xdotool's shell form) to PATH
#                       (tools/gimp_screenshot.py takes its picture then)
# Each wait gives up after 60 s with a message; the test then fails on the driver's results.
set -u
title="${DIALOG_TITLE:?}"

wait_for() {  # wait_for CMD...: retry CMD for 60 s
    for _ in $(seq 1 300); do "$@" && return 0; sleep 0.2; done
    return 1
}
find_win() { win=$(xdotool search "$@" 2>/dev/null | head -n 1); [ -n "$win" ]; }

for step in "$@"; do
    case "$step" in
    dialog:*)
        key="${step#dialog:}"
        wait_for find_win --name "$title" || { echo "press_keys: no dialog for $key" >&2; exit 1; }
        sleep 0.5  # let GTK finish mapping it before the key arrives
        xdotool windowfocus --sync "$win" key "$key"
        wait_for bash -c "! xdotool search --name '$title' >/dev/null 2>&1"
        ;;
    file:*)
        wait_for test -e "${step#file:}" || { echo "press_keys: no ${step#file:}" >&2; exit 1; }
        ;;
    done:*)
        sleep 1
        touch "${step#done:}"
        ;;
    shown:*)
        wait_for find_win --name "$title" || { echo "press_keys: no dialog to show" >&2; exit 1; }
        xdotool mousemove 1279 1023  # no tooltip in the picture
        sleep 1.5  # mapped, drawn, the daemon's preset line filled in
        xdotool getwindowgeometry --shell "$win" > "${step#shown:}.part" && mv "${step#shown:}.part" "${step#shown:}"
        ;;
    window:*)
        rest="${step#window:}"; name="${rest%%:*}"; key="${rest#*:}"
        wait_for find_win --onlyvisible --name "$name" || { echo "press_keys: no window $name" >&2; exit 1; }
        xdotool windowfocus --sync "$win" key "$key"
        ;;
    esac
    echo "press_keys: $step" >&2
done
