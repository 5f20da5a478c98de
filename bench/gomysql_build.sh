#!/usr/bin/env bash
# Builds go-mysql-elasticsearch for bench/gomysql.py (issue 19), cached: a rerun
# with the binary present prints its path and builds nothing.
#
#     bash bench/gomysql_build.sh          # prints the binary's path on stdout
#
# A bench tool only: neither the product nor `make test` needs it.
#
# The Go module proxy refuses go-mysql-elasticsearch and four of its modules
# (go-mysql, BurntSushi/toml, pingcap/parser, pingcap/tipb), so their sources
# come from bare git mirrors (the session tool `fetch` makes them under
# GOMYSQL_MIRRORS, default /work/.mirror/OWNER+NAME/repo), unpacked at the
# commits go-mysql-elasticsearch's go.mod (and go-mysql's, for parser and tipb)
# pins, and wired in with `replace` directives. Every other module comes from
# the proxy; GOSUMDB is off because the replaced modules have no checksums there.
# Commits (all present in the mirrors, none substituted):
#   go-mysql-org/go-mysql-elasticsearch fe26196 (master's last commit; go.mod
#       still names it github.com/siddontang/go-mysql-elasticsearch)
#   go-mysql-org/go-mysql    de6c3a84bcbe  (v0.0.0-20190524062908-de6c3a84bcbe)
#   BurntSushi/toml          v0.3.1
#   pingcap/parser           e336082eb825  (v0.0.0-20190506092653-e336082eb825)
#   pingcap/tipb             535e1abaa330  (v0.0.0-20190428032612-535e1abaa330)
# parser and tipb had no go.mod at those commits (parser's is parked as go.mod1,
# and names pingcap/tidb for its tests only), toml v0.3.1 neither: each gets a
# one-line go.mod; the build adds, through -mod=mod, the modules their packages
# import.
set -euo pipefail

HOME_DIR="${CDC_DEV_HOME:-/var/tmp/cdc-dev}"
OUT="$HOME_DIR/go-mysql-elasticsearch"
BIN="$OUT/bin/go-mysql-elasticsearch"
MIRRORS="${GOMYSQL_MIRRORS:-/work/.mirror}"

GME_COMMIT=fe26196
GOMYSQL_COMMIT=de6c3a84bcbe
TOML_COMMIT=v0.3.1
PARSER_COMMIT=e336082eb825
TIPB_COMMIT=535e1abaa330

if [[ -x "$BIN" && -f "$OUT/build.ok" ]]; then
    echo "$BIN"
    exit 0
fi

unpack() {  # unpack REPO COMMIT DIR
    local git_dir="$MIRRORS/$1/repo"
    if [[ ! -d "$git_dir" ]]; then
        echo "missing mirror $git_dir (fetch github:${1/+//} first)" >&2
        exit 1
    fi
    rm -rf "$3"
    mkdir -p "$3"
    git --git-dir="$git_dir" archive "$2" | tar -x -C "$3"
}

rm -rf "$OUT/src" "$OUT/build.ok"
mkdir -p "$OUT/src" "$OUT/bin"
unpack go-mysql-org+go-mysql-elasticsearch "$GME_COMMIT" "$OUT/src/go-mysql-elasticsearch"
unpack go-mysql-org+go-mysql "$GOMYSQL_COMMIT" "$OUT/src/go-mysql"
unpack BurntSushi+toml "$TOML_COMMIT" "$OUT/src/toml"
unpack pingcap+parser "$PARSER_COMMIT" "$OUT/src/parser"
unpack pingcap+tipb "$TIPB_COMMIT" "$OUT/src/tipb"
[[ -f "$OUT/src/toml/go.mod" ]] || echo "module github.com/BurntSushi/toml" > "$OUT/src/toml/go.mod"
[[ -f "$OUT/src/parser/go.mod" ]] || echo "module github.com/pingcap/parser" > "$OUT/src/parser/go.mod"
[[ -f "$OUT/src/tipb/go.mod" ]] || echo "module github.com/pingcap/tipb" > "$OUT/src/tipb/go.mod"

cd "$OUT/src/go-mysql-elasticsearch"
# go-mysql's own go.mod has requires only: replace directives are the main module's business.
cat >> go.mod <<'EOF'

replace (
	github.com/siddontang/go-mysql => ../go-mysql
	github.com/BurntSushi/toml => ../toml
	github.com/pingcap/parser => ../parser
	github.com/pingcap/tipb => ../tipb
)
EOF
export GOFLAGS="-mod=mod -buildvcs=false" GOSUMDB=off GONOSUMDB='*' GOPROXY="${GOPROXY:-https://proxy.golang.org}"
export GOTOOLCHAIN=local
# No `go mod tidy`: in a go 1.12 module it walks the dependencies' tests too,
# would fetch (and by MVS upgrade shared modules to) what only those tests
# import, and parser's tests import pingcap/tidb, which the proxy refuses.
# -mod=mod lets the build add just the modules the binary's packages import, at
# the versions go.mod pins.
go build -o "$BIN" ./cmd/go-mysql-elasticsearch >&2
{
    echo "go: $(go version)"
    echo "go-mysql-elasticsearch $GME_COMMIT go-mysql $GOMYSQL_COMMIT toml $TOML_COMMIT parser $PARSER_COMMIT tipb $TIPB_COMMIT"
} > "$OUT/build.ok"
echo "$BIN"
