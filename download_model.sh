#!/bin/sh
# Download a released GPT-2 model into models/<name as typed>.
#
#   sh download_model.sh 124M        (also 355M, 774M, 1558M; 117M and 345M are the
#                                     2019 names of 124M and 355M)
#
# Files come from OpenAI's public blob storage. Re-running skips complete files and
# resumes partial ones (kept as FILE.part); a file gets its final name only once its size
# matches the server's. MODELS_DIR and GPT2_DOWNLOAD_URL override where files go and
# where they come from.
set -eu

fail() {
    echo "download_model.sh: $*" >&2
    exit 1
}

if [ $# -ne 1 ]; then
    echo "usage: sh download_model.sh MODEL   (MODEL: 124M, 355M, 774M or 1558M)" >&2
    exit 2
fi
name=$1
case "$name" in
    124M | 117M) remote=124M ;;
    355M | 345M) remote=355M ;;
    774M | 1558M) remote=$name ;;
    *)
        echo "download_model.sh: unknown model '$name': choose 124M (alias 117M)," \
            "355M (alias 345M), 774M or 1558M" >&2
        exit 2
        ;;
esac
command -v curl >/dev/null 2>&1 || fail "curl is needed to download models; install it"

base=${GPT2_DOWNLOAD_URL:-https://openaipublic.blob.core.windows.net/gpt-2/models}
dir=${MODELS_DIR:-models}/$name
mkdir -p "$dir" || fail "cannot create $dir"

for file in checkpoint encoder.json hparams.json model.ckpt.data-00000-of-00001 \
    model.ckpt.index model.ckpt.meta vocab.bpe; do
    target=$dir/$file
    if [ -f "$target" ]; then
        echo "$target: already downloaded"
        continue
    fi
    url=$base/$remote/$file
    headers=$(curl -sSfLI --retry 3 "$url") ||
        fail "cannot reach $url (no network?); fetch it by other means into $target"
    # After redirects the last Content-Length is the file's.
    size=$(printf '%s\n' "$headers" | tr -d '\r' |
        awk 'tolower($1) == "content-length:" { n = $2 } END { print n }')
    [ -n "$size" ] || fail "$url: the server did not say how large the file is"
    have=0
    [ -f "$target.part" ] && have=$(wc -c <"$target.part")
    if [ "$have" -ne "$size" ]; then
        [ "$have" -gt "$size" ] && rm -f "$target.part"
        echo "Fetching $file ($size bytes)"
        curl -fL --retry 3 --progress-bar -C - -o "$target.part" "$url" ||
            fail "download of $url failed; run the same command again to resume"
    fi
    have=$(wc -c <"$target.part")
    [ "$have" -eq "$size" ] ||
        fail "$target.part has $have of $size bytes; run the same command again to resume"
    mv "$target.part" "$target"
done
echo "Model $name is in $dir"
