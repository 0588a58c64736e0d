"""A CLIP-format tokenizer for the shapes vocabulary.

The files are laid out exactly as CLIP's (vocab.json + merges.txt): the 256 byte-level
symbols, the same 256 with the end-of-word suffix `</w>`, then one token per merge, then
<|startoftext|> and <|endoftext|> (so the end token has the largest id and pooling can
find it with argmax, as CLIP does). Merges are learned by plain BPE over the world's
words until every word is one token; any other text still tokenizes through the byte
symbols. The encoder below is the CLIP algorithm restricted to ASCII input, which is all
the training captions use; the product's tokenizer (TypeScript) is the full one and is
checked against ids written by this one in the golden fixtures.
"""
import json
import os
import re

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def learn_merges(words):
    seqs = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in set(words)}
    merges = []
    while any(len(s) > 1 for s in seqs.values()):
        counts = {}
        for s in seqs.values():
            for a, b in zip(s, s[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        pair = max(sorted(counts), key=lambda p: counts[p])   # most frequent, ties by order
        merges.append(pair)
        for w, s in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == pair:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


def build(words, max_length):
    byte_syms = list(bytes_to_unicode().values())
    vocab_list = byte_syms + [s + "</w>" for s in byte_syms]
    merges = learn_merges([w for w in words if len(w) > 1])
    for a, b in merges:
        vocab_list.append(a + b)
    vocab_list += [BOS, EOS]
    return Tokenizer({t: i for i, t in enumerate(vocab_list)}, merges, max_length)


class Tokenizer:
    PAT = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")

    def __init__(self, vocab, merges, max_length):
        self.vocab, self.merges, self.max_length = vocab, merges, max_length
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()

    def bpe(self, token):
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode(self, text):
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for tok in self.PAT.findall(text):
            tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            ids += [self.vocab[t] for t in self.bpe(tok)]
        ids = [self.vocab[BOS]] + ids[: self.max_length - 2] + [self.vocab[EOS]]
        return ids + [self.vocab[EOS]] * (self.max_length - len(ids))

    @property
    def vocab_size(self):
        return len(self.vocab)

    def save(self, folder):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "vocab.json"), "w") as f:
            json.dump(self.vocab, f, ensure_ascii=False)
        with open(os.path.join(folder, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self.merges))
        with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
            json.dump({"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}, f, indent=2)
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "CLIPTokenizer", "model_max_length": self.max_length,
                       "do_lower_case": True, "bos_token": BOS, "eos_token": EOS,
                       "pad_token": EOS, "unk_token": EOS}, f, indent=2)
