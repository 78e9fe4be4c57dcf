#!/usr/bin/env bash
# The offline review of a pull request, as CI runs it (.github/workflows/stack-review.yml):
#   .github/review.sh BASE_REV COMMENT_FILE
# For every stack the change touches (its stack file, or the program: then every stack) it appends
# `secure-export diff --markdown` and the `plan --policy` report to COMMENT_FILE. Exit status 1 when
# a stack is invalid, cannot be diffed or breaks a mandatory policy; the comment is written anyway.
#   .github/review.sh --fit FILE [LIMIT]
# prints FILE as a pull-request comment: unchanged when it has at most LIMIT characters (default
# 60000; GitHub refuses comments over 65536), else without the per-resource <details> sections.
set -uo pipefail

if [ "${1:-}" = "--fit" ]; then
  file="${2:?usage: review.sh --fit FILE [LIMIT]}"
  limit="${3:-60000}"
  if [ "$(wc -c <"$file")" -le "$limit" ]; then
    cat "$file"
  else
    awk '/^<details>$/ { skip = 1 } !skip { print } /^<\/details>$/ { skip = 0 }' "$file"
    echo
    echo "_Per-resource sections left out: the whole review is longer than a comment may be. The job summary has all of it._"
  fi
  exit 0
fi

base="${1:?usage: review.sh BASE_REV COMMENT_FILE}"
out="${2:?usage: review.sh BASE_REV COMMENT_FILE}"
cd "$(git rev-parse --show-toplevel)" || exit 2
if ! changed=$(git diff --name-only "$base"...HEAD); then
  echo "review.sh: cannot compare with $base (fetch the history: actions/checkout fetch-depth: 0)" >&2
  exit 2
fi

stacks=$(printf '%s\n' "$changed" | sed -n 's#^stacks/Pulumi\.\(.*\)\.yaml$#\1#p')
# Anything the Pulumi program is made of changes every stack's plan.
if printf '%s\n' "$changed" | grep -qE '^(components/|__main__\.py$|Pulumi\.yaml$|pyproject\.toml$|secure_export/)'; then
  stacks="$stacks $(ls stacks/Pulumi.*.yaml 2>/dev/null | sed 's#^stacks/Pulumi\.\(.*\)\.yaml$#\1#')"
fi
stacks=$(printf '%s\n' $stacks | sort -u)

status=0
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
{
  echo "<!-- secure-export-review -->"
  echo "## Stack review (offline: no cloud, no Pulumi CLI)"
  echo
  if [ -z "$stacks" ]; then
    echo "This change touches no stack and not the Pulumi program."
  fi
} >"$out"

for stack in $stacks; do
  echo "review.sh: stack $stack" >&2
  if ! secure-export diff --stack "$stack" --base "$base" --markdown >>"$out" 2>"$errors"; then
    status=1
    {
      echo "### stack \`$stack\`: no diff"
      echo '```'
      grep -v '^secure-export diff: planning' "$errors"
      echo '```'
    } >>"$out"
  fi
  cat "$errors" >&2
  if [ -f "stacks/Pulumi.$stack.yaml" ]; then
    secure-export plan --stack "$stack" --policy --json >/dev/null 2>"$errors"
    rc=$?
    [ "$rc" -eq 0 ] || status=1
    {
      echo
      if [ "$rc" -eq 0 ]; then echo "**Policies for \`$stack\`: pass.**"; else echo "**Policies for \`$stack\`: a mandatory policy is broken.**"; fi
      echo '```'
      cat "$errors"
      echo '```'
      echo
    } >>"$out"
    cat "$errors" >&2
  fi
done
exit "$status"
