#!/bin/sh
# The jokes walkthrough end to end; `make jokes` runs it (see the Makefile's variables).
# Downloads what is missing, prepares and encodes the jokes, fine-tunes for $STEPS steps,
# then prints jokes for $PROMPT from the fine-tuned run.
set -eu
: "${PYTHON:=.venv/bin/python}" "${MODEL:=117M}" "${MODELS_DIR:=models}"
: "${JOKES:=reddit_jokes.json}" "${STEPS:=300}" "${RUN:=run1}"
: "${PROMPT:=Why did the chicken cross the road?|}" "${TRAIN_FLAGS:=}"
: "${JOKES_URL:=https://raw.githubusercontent.com/taivop/joke-dataset/master/reddit_jokes.json}"

if [ ! -f "$MODELS_DIR/$MODEL/hparams.json" ]; then
    echo "== Downloading GPT-2 $MODEL into $MODELS_DIR/$MODEL"
    MODELS_DIR=$MODELS_DIR sh download_model.sh "$MODEL" || {
        echo "jokes: could not download GPT-2 $MODEL. Fetch its files (README, 'No internet')" \
            "into $MODELS_DIR/$MODEL, or set MODEL=name MODELS_DIR=dir to a model you have." >&2
        exit 1
    }
fi
if [ ! -f "$JOKES" ]; then
    echo "== Downloading $JOKES"
    if ! curl -fL --retry 3 --progress-bar -o "$JOKES.part" "$JOKES_URL"; then
        rm -f "$JOKES.part"
        echo "jokes: could not download $JOKES_URL. Fetch it by other means and put it at" \
            "$JOKES, or set JOKES=path/to/reddit_jokes.json (wocka.json and" \
            "stupidstuff.json work too)." >&2
        exit 1
    fi
    mv "$JOKES.part" "$JOKES"
fi

echo "== Preparing input-text.txt from $JOKES"
"$PYTHON" prepare_jokes.py "$JOKES" -o input-text.txt --val_fraction 0.02 \
    --val_output input-val.txt
echo "== Encoding"
PYTHONPATH=src "$PYTHON" encode.py --model_name "$MODEL" --models_dir "$MODELS_DIR" \
    input-text.txt input-text.txt.npz
echo "== Fine-tuning for $STEPS steps (run $RUN)"
# shellcheck disable=SC2086  # TRAIN_FLAGS is a list of flags
PYTHONPATH=src "$PYTHON" train.py --dataset input-text.txt.npz --model_name "$MODEL" \
    --models_dir "$MODELS_DIR" --run_name "$RUN" --steps "$STEPS" \
    --val_dataset input-val.txt --val_every 100 --val_batch_count 10 $TRAIN_FLAGS
echo "== Jokes for: $PROMPT"
printf '%s\n' "$PROMPT" | "$PYTHON" src/interactive_conditional_samples.py \
    --models_dir checkpoint --model_name "$RUN" --top_k 40 --temperature 0.7 --nsamples 5
