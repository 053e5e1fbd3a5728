# Shared code of the bisect-tests scripts (sourced, not run).
#
# A script for source S answers, for the commit checked out in the current
# git work tree, whether S works: exit 0 good, 1 bad, 125 untestable. It
# must give the same answer from any commit of the history, so it uses
# nothing from the work tree but what it tests: run it from a copy made by
# `bisect-tests/prepare` (the scripts at an old commit may not exist).
#
# Verdicts:
#   good (0)   S's crate builds in every tickless feature set, for the host
#              and for the kernel's target (x86_64-unknown-none), its host
#              simulator scenarios pass in each, and (unless --fast) its
#              in-guest suite passes under QEMU/TCG where the commit has one.
#              A feature set is left out only where the commit predates one
#              of its features (no ancestor declared it: bt_feature_introduced).
#   bad (1)    any of those fails — including a build failure of S or of
#              what S depends on: a commit that cannot build a working S is
#              exactly what a bisection for S must be able to land on — or
#              a tickless feature of S that an ancestor declared is missing
#              (deleted or renamed).
#   skip (125) the commit cannot be tested here: S does not exist yet at
#              this commit; or the environment lacks cargo or the
#              x86_64-unknown-none target, the crates cannot be fetched, a
#              feature is missing in a shallow clone, or (without --fast,
#              when the commit has an in-guest suite) qemu-system-x86_64 is
#              missing.

set -u

# The tickless feature sets each source is tested in ("" = periodic only).
features_of() {
    case "$1" in
        hpet) echo "- oneshot" ;;
        lapic) echo "- oneshot deadline oneshot,deadline" ;;
        pit) echo "- oneshot" ;;
        tsc) echo "-" ;;
        acpi_pm) echo "-" ;;
        *) return 1 ;;
    esac
}

bt_init() { # source, args...
    BT_SOURCE=$1
    shift
    BT_FAST=0
    for a in "$@"; do
        case "$a" in
            --fast) BT_FAST=1 ;;
            -h | --help)
                echo "usage: $(basename "$0") [--fast]   (run from a copy: see bisect-tests/prepare)"
                exit 0
                ;;
            *)
                echo "$(basename "$0"): unknown argument $a" >&2
                exit 125
                ;;
        esac
    done
    if ! BT_TOP=$(git rev-parse --show-toplevel 2>/dev/null); then
        echo "bisect-tests: not inside a git work tree" >&2
        exit 125
    fi
    cd "$BT_TOP" || exit 125
    BT_COMMIT=$(git rev-parse --short=12 HEAD)
    BT_LOGDIR=${DYNTICKS_BISECT_LOGDIR:-${TMPDIR:-/tmp}/dynticks-bisect}
    mkdir -p "$BT_LOGDIR"
    BT_LOG="$BT_LOGDIR/$BT_SOURCE-$BT_COMMIT.log"
    : >"$BT_LOG"
}

# Prints the summary line and exits with the verdict's code.
bt_verdict() { # good|bad|skip, reason
    local code
    case "$1" in good) code=0 ;; bad) code=1 ;; *) code=125 ;; esac
    local line="bisect-tests: source=$BT_SOURCE commit=$BT_COMMIT verdict=$1 reason=\"$2\""
    echo "$line" >>"$BT_LOG"
    echo "$line"
    echo "  log: $BT_LOG"
    echo "$line"
    exit "$code"
}

# Runs a command with its output in the log; returns its status.
bt_run() {
    echo "+ $*" >>"$BT_LOG"
    "$@" >>"$BT_LOG" 2>&1
}

# Whether the checked-out sources/S/Cargo.toml declares feature F (a line
# that starts `F =`, as its [features] table writes it).
bt_declares() { # source, feature
    grep -qE "^$2 *=" "sources/$1/Cargo.toml"
}

# The oldest commit that HEAD descends from (HEAD included) whose diff of
# sources/S/Cargo.toml adds or removes a declaration of feature F; empty
# if there is none: then no ancestor of HEAD ever declared F, and HEAD
# predates the feature's introduction.
#
# Why this question. A feature set is left untested only where the commit
# comes before the feature existed (an old lapic without `deadline`). A
# feature that existed and is gone was deleted or renamed, and that commit
# is bad: renaming `oneshot` while the code still tests
# `cfg(feature = "oneshot")` compiles the one-shot device out, and every
# build stays green.
#
# Why it is robust. The answer comes from HEAD's ancestry in the object
# database, not from the work tree (the commit under test), nor from refs
# or branch names (during `git bisect run` HEAD is detached at the commit
# under test; which refs exist depends on the clone). A feature existed
# before HEAD exactly when some ancestor of HEAD declared it — wherever it
# was introduced: on a side branch merged since, or on two branches. A
# commit HEAD does not descend from cannot have removed anything from HEAD,
# so it is not looked at. `--full-history` keeps side branches that
# default history simplification would prune; `-m` diffs merges too. A
# shallow clone hides ancestors: the caller then says skip, not "predates".
bt_feature_introduced() { # source, feature
    git log --full-history -m --reverse --format=%H -G"^$2 *=" HEAD -- \
        "sources/$1/Cargo.toml" 2>/dev/null | head -n1
}

# Sets BT_SETS to the feature sets of S to test at this commit ("-" =
# none). A set with a feature the commit predates is left out; a feature
# that is missing although an ancestor declared it is a bad verdict.
bt_feature_sets() { # source
    local s=$1 f feat intro predates
    BT_SETS=()
    for f in $(features_of "$s"); do
        predates=0
        if [ "$f" != "-" ]; then
            for feat in ${f//,/ }; do
                bt_declares "$s" "$feat" && continue
                intro=$(bt_feature_introduced "$s" "$feat")
                if [ -n "$intro" ]; then
                    bt_verdict bad "feature $feat of $s missing at this commit (declared in its ancestor ${intro:0:12})"
                fi
                if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
                    bt_verdict skip "feature $feat of $s missing and the clone is shallow: cannot tell whether it was removed"
                fi
                predates=1
            done
        fi
        if [ $predates = 1 ]; then
            echo "# $s: feature set '$f' not tested: this commit predates a feature of it" >>"$BT_LOG"
        else
            BT_SETS+=("$f")
        fi
    done
}

# Whether the toolchain has the kernel's target (its core library).
bt_have_baremetal() {
    local dir
    dir=$(rustc --print target-libdir --target x86_64-unknown-none 2>/dev/null) || return 1
    compgen -G "$dir/libcore-*" >/dev/null
}

bt_check_source() {
    local s=$BT_SOURCE
    [ -f "sources/$s/Cargo.toml" ] || bt_verdict skip "sources/$s does not exist at this commit"
    command -v cargo >/dev/null 2>&1 || bt_verdict skip "cargo is not installed"
    bt_feature_sets "$s"
    bt_run cargo fetch || bt_verdict skip "crates could not be fetched"
    bt_have_baremetal ||
        bt_verdict skip "the x86_64-unknown-none target is not installed (rustup target add x86_64-unknown-none)"

    local f args
    for f in "${BT_SETS[@]}"; do
        if [ "$f" = "-" ]; then args=(); else args=(--features "$f"); fi
        bt_run cargo build -p "$s" "${args[@]}" ||
            bt_verdict bad "build of $s failed (features: ${f/-/none})"
        # The kernel's target, no std: compiled (`check`, no code
        # generation, as scripts/test does for every source).
        bt_run cargo check -p "$s" --target x86_64-unknown-none "${args[@]}" ||
            bt_verdict bad "bare-metal build of $s failed (x86_64-unknown-none, features: ${f/-/none})"
        bt_run cargo test -p "$s" "${args[@]}" ||
            bt_verdict bad "host tests of $s failed (features: ${f/-/none})"
    done
}

# The in-guest suite of the source, where this commit has one.
bt_check_guest() {
    [ "$BT_FAST" = 1 ] && return 0
    if [ ! -f xtask/Cargo.toml ] || ! grep -qs -- '--source' xtask/src/*.rs; then
        echo "# no in-guest suite with --source at this commit" >>"$BT_LOG"
        return 0
    fi
    command -v qemu-system-x86_64 >/dev/null 2>&1 ||
        bt_verdict skip "qemu-system-x86_64 is missing (apt-get install qemu-system-x86), or use --fast"
    bt_run cargo xtask test --accel tcg --source "$BT_SOURCE" ||
        bt_verdict bad "in-guest suite of $BT_SOURCE failed under QEMU/TCG"
}

bt_main() { # source, args...
    bt_init "$@"
    bt_check_source
    bt_check_guest
    if [ "$BT_FAST" = 1 ]; then
        bt_verdict good "builds and passes its host scenarios in every feature set (--fast: no guest)"
    fi
    bt_verdict good "builds, passes its host scenarios in every feature set and its in-guest suite"
}
