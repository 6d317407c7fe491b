# Kaldi-style option parser, to be *sourced* after a script has set its defaults:
#
#   stage=0; max_duration=200; use_gpu=false
#   . shared/parse_options.sh || exit 1
#
# Then `--max-duration 300` sets max_duration=300 (dashes become underscores). Rules, as in
# Kaldi/ESPnet/icefall:
#   - the variable must already exist (unknown options are an error naming them);
#   - write `--name value`, not `--name=value`;
#   - a variable whose default is true/false only accepts true or false;
#   - `--config FILE` sources FILE first (later options override it);
#   - `--help` / `-h` prints $help_message (if set) and exits 0;
#   - parsing stops at the first argument that is not an option; the rest stay in "$@".

__po_script=${0##*/}

# --config is handled first so that the command line overrides the file.
for ((__po_i = 1; __po_i < $#; __po_i++)); do
  if [ "${!__po_i}" = "--config" ]; then
    __po_j=$((__po_i + 1))
    __po_config=${!__po_j}
    if [ ! -r "$__po_config" ]; then
      echo "$__po_script: cannot read config file '$__po_config'" >&2
      exit 1
    fi
    # shellcheck disable=SC1090
    . "$__po_config"
  fi
done

while true; do
  [ -z "${1:-}" ] && break
  case "$1" in
    --help | -h)
      if [ -z "${help_message:-}" ]; then
        echo "$__po_script: no help message; the options are the variables at the top of the script" >&2
      else
        printf '%s\n' "$help_message"
      fi
      exit 0
      ;;
    --*=*)
      echo "$__po_script: options are written '--name value', not '$1'" >&2
      exit 1
      ;;
    --config)
      shift 2
      ;;
    --*)
      __po_name=$(echo "${1#--}" | sed 's/-/_/g')
      if [ -z "${!__po_name+set}" ]; then
        echo "$__po_script: invalid option $1 (no variable '$__po_name' in this script; see --help)" >&2
        exit 1
      fi
      if [ $# -lt 2 ]; then
        echo "$__po_script: option $1 needs a value" >&2
        exit 1
      fi
      __po_old=${!__po_name}
      if [ "$__po_old" = true ] || [ "$__po_old" = false ]; then
        if [ "$2" != true ] && [ "$2" != false ]; then
          echo "$__po_script: option $1 takes true or false, got '$2'" >&2
          exit 1
        fi
      fi
      printf -v "$__po_name" '%s' "$2"
      shift 2
      ;;
    *)
      break
      ;;
  esac
done

unset __po_i __po_j __po_config __po_name __po_old __po_script
true
