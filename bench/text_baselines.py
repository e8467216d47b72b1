#!/usr/bin/python3
"""Baselines and scoring for bench/text_bench.sh (scikit-learn from Debian).

  text_baselines.py fortunes [DIR [N]]
      TF-IDF + logistic regression on fortunes' categories, on the split
      Rookery's trainer uses (a fortune is held out when the 64-bit FNV-1a
      hash of its stripped bytes is 0 mod 10: datasets/detail.hpp), so the
      three classifiers of the bench are judged on the same test texts;
      N > 0 trains on a seeded subset of N training texts.
  text_baselines.py wordnet-queries [DIR] N
      N held-out WordNet synsets (test split, single-sense lemmas, one per
      lemma) as JSON lines {"lemma", "gloss"}.
  text_baselines.py recall QUERIES.jsonl GLOSS_EMB.json LEMMA_EMB.json
      recall@1/@10 of gloss -> lemma retrieval among the N lemmas, for the
      given embeddings and, side by side, word and character TF-IDF vectors.
"""
import json
import os
import sys

import numpy as np


def fnv1a(b):
    h = 0xcbf29ce484222325
    for c in b:
        h ^= c
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


WS = b" \t\r\n\v\f"


def read_fortunes(d):
    cats = []
    for f in sorted(os.listdir(d)):
        p = os.path.join(d, f)
        if f.endswith((".dat", ".u8")) or f.startswith(".") or os.path.islink(p) or not os.path.isfile(p):
            continue
        if os.path.exists(p + ".dat"):
            cats.append(f)
    texts, labels = [], []
    for c, name in enumerate(cats):
        cur = []
        def flush():
            t = b"".join(cur).strip(WS)
            if t:
                texts.append(t)
                labels.append(c)
            cur.clear()
        for line in open(os.path.join(d, name), "rb").read().split(b"\n"):
            if line.rstrip(b"\r") == b"%" and (line == b"%" or line == b"%\r"):
                flush()
            else:
                cur.append(line + b"\n")
        flush()
    return cats, texts, labels


def read_wordnet(d):
    out = []
    for pos in ("adj", "adv", "noun", "verb"):
        p = os.path.join(d, "data." + pos)
        if not os.path.exists(p):
            continue
        for line in open(p, "rb").read().split(b"\n"):
            if not line or line[:1] == b" " or b" | " not in line:
                continue
            head, gloss = line.split(b" | ", 1)
            f = head.split(b" ")
            n = int(f[3], 16)
            lemmas = []
            for w in range(n):
                lem = f[4 + 2 * w].split(b"(")[0].replace(b"_", b" ")
                if lem:
                    lemmas.append(lem)
            gloss = gloss.strip(WS)
            if lemmas and gloss:
                text = b", ".join(lemmas) + b": " + gloss
                out.append((lemmas, gloss, text))
    return out


def fortunes(d, limit=0):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    cats, texts, labels = read_fortunes(d)
    test = [fnv1a(t) % 10 == 0 for t in texts]
    dec = [t.decode("utf-8", "replace") for t in texts]
    xtr = [t for t, s in zip(dec, test) if not s]
    ytr = [y for y, s in zip(labels, test) if not s]
    xte = [t for t, s in zip(dec, test) if s]
    yte = [y for y, s in zip(labels, test) if s]
    if limit and limit < len(xtr):
        # A seeded subset of the same size as the trainer's limit_train (not
        # the same texts: the trainer's subset comes from its own shuffle).
        pick = np.random.default_rng(0).choice(len(xtr), size=limit, replace=False)
        xtr = [xtr[i] for i in pick]
        ytr = [ytr[i] for i in pick]
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    a = vec.fit_transform(xtr)
    clf = LogisticRegression(C=10, max_iter=300)
    clf.fit(a, ytr)
    acc = float((clf.predict(vec.transform(xte)) == np.array(yte)).mean())
    majority = float((np.array(yte) == np.bincount(ytr, minlength=len(cats)).argmax()).mean())
    print(json.dumps({"classes": len(cats), "train": len(xtr), "test": len(xte),
                      "tfidf_logreg_acc": round(acc, 4), "majority_acc": round(majority, 4)}))


def wordnet_queries(d, n):
    seen, rows = set(), []
    syn = read_wordnet(d)
    counts = {}
    for lemmas, _, _ in syn:
        for l in lemmas:
            counts[l.lower()] = counts.get(l.lower(), 0) + 1
    for lemmas, gloss, text in syn:
        lem = lemmas[0]
        if fnv1a(text) % 10 != 0 or counts[lem.lower()] != 1 or lem.lower() in seen:
            continue
        seen.add(lem.lower())
        # The gloss without its quoted examples, which often contain the lemma.
        g = gloss.split(b'; "')[0].strip(WS)
        rows.append({"lemma": lem.decode("utf-8", "replace"), "gloss": g.decode("utf-8", "replace")})
    rng = np.random.default_rng(0)
    pick = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    for i in sorted(pick):
        print(json.dumps(rows[i]))


def recall_of(q, c, k):
    q = q / (np.linalg.norm(q, axis=1, keepdims=True) + 1e-12)
    c = c / (np.linalg.norm(c, axis=1, keepdims=True) + 1e-12)
    s = q @ c.T
    # Ties count against the true lemma (a gloss that shares no word with
    # any lemma scores 0 everywhere and must not count as found).
    true = s[np.arange(len(q)), np.arange(len(q))][:, None]
    rank = (s >= true).sum(1) - 1
    return float((rank < k).mean())


def recall(queries, gloss_emb, lemma_emb):
    from sklearn.feature_extraction.text import TfidfVectorizer
    rows = [json.loads(l) for l in open(queries)]
    g = np.array(json.load(open(gloss_emb)), dtype=np.float64)
    l = np.array(json.load(open(lemma_emb)), dtype=np.float64)
    out = {"candidates": len(rows), "chance_at_10": round(10 / len(rows), 4),
           "text_pipeline": {"recall_at_1": recall_of(g, l, 1), "recall_at_10": recall_of(g, l, 10)}}
    gl = [r["gloss"] for r in rows]
    le = [r["lemma"] for r in rows]
    for name, vec in (("tfidf_words", TfidfVectorizer(sublinear_tf=True)),
                      ("tfidf_char_3_5", TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(3, 5)))):
        vec.fit(gl + le)
        gq = vec.transform(gl).toarray()
        lq = vec.transform(le).toarray()
        out[name] = {"recall_at_1": recall_of(gq, lq, 1), "recall_at_10": recall_of(gq, lq, 10)}
    print(json.dumps(out))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "fortunes":
        fortunes(sys.argv[2] if len(sys.argv) > 2 else "/usr/share/games/fortunes",
                 int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    elif cmd == "wordnet-queries":
        wordnet_queries(sys.argv[2], int(sys.argv[3]))
    elif cmd == "recall":
        recall(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
