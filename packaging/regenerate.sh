#!/usr/bin/env bash
# Regenerate the files derived from the code: the man pages zoomd(8) and zoomd.toml(5)
# (from the argparse parser, the config schema and the shipped zoomd.toml's comments)
# and the bash completion (from the parser). tests/test_packaging_manpages.py fails
# when the committed copies differ from what this writes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
export PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}"
"$python" -m zoomd manpage 8 > "$here/man/zoomd.8"
"$python" -m zoomd manpage 5 > "$here/man/zoomd.toml.5"
"$python" -m zoomd completion bash > "$here/completion/zoomd.bash"
echo "regenerated: packaging/man/zoomd.8 packaging/man/zoomd.toml.5 packaging/completion/zoomd.bash"
