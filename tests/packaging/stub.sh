#!/usr/bin/env bash
# Stand-in for python, pip, npm, node, dpkg, apt-get, sudo and webllm-py in
# tests/test_setup_scripts.py: appends "NAME ARGS" to $STUB_LOG and answers as the
# test's STUB_* variables say (exit codes, missing Debian packages), so the scripts'
# wiring runs in seconds without installing anything.
name="$(basename "$0")"
printf '%s %s\n' "$name" "$*" >> "$STUB_LOG"
case "$name" in
  python|python3)
    case "${1:-}" in
      -m) case "${2:-}" in
            pytest) exit "${STUB_PYTEST_RC:-0}" ;;
            pip) [ "${3:-}" = install ] && exit "${STUB_PIP_RC:-0}" ;;
            venv) mkdir -p "$3/bin" && ln -sf "$(readlink -f "$0")" "$3/bin/python" ;;
          esac ;;
      -c) [ -z "${STUB_PY_PRINT:-}" ] || echo "$STUB_PY_PRINT"
          exit "${STUB_PY_C_RC:-0}" ;;
    esac ;;
  pip) [ "${1:-}" = install ] && exit "${STUB_PIP_RC:-0}" ;;
  dpkg) for p in ${STUB_MISSING_DEBS:-}; do [ "${2:-}" = "$p" ] && exit 1; done ;;
  apt-get) [ "${1:-}" = install ] && exit "${STUB_APT_RC:-0}" ;;
  npm)
    case "${1:-}" in
      ci) [ "${STUB_NPM_CI_RC:-0}" = 0 ] || exit "$STUB_NPM_CI_RC"; mkdir -p node_modules ;;
      run) [ "${2:-}" = build ] && mkdir -p dist && touch dist/index.js dist/worker.js ;;
      test) exit "${STUB_NPM_TEST_RC:-0}" ;;
    esac ;;
  webllm-py)
    case "${1:-}" in
      build) mkdir -p "$4" && echo '{}' > "$4/manifest.json" ;;
      serve) echo "webllm-py serve: http://127.0.0.1:8000/" ;;
    esac ;;
esac
exit 0
