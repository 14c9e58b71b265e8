"""Demo transcripts: one English phrase of the cue class, with neutral filler (and sometimes a second class)."""
from __future__ import annotations

import numpy as np

from .spec import CLASSES, P_MIXED_TEXT

PHRASES = {
    "neutral": ["the meeting was moved to three o'clock", "I picked up the groceries on the way home",
                "we will take the train tomorrow morning", "the report is on your desk",
                "the store closes at nine on weekdays", "let me check the schedule first",
                "the package arrived this afternoon", "she works on the second floor"],
    "angry": ["this is completely unacceptable", "I am sick and tired of your excuses", "how dare you lie to me",
              "get out of my way right now", "you ruined everything again", "I told you a hundred times to stop",
              "I am furious about what you did", "don't you ever touch my things again"],
    "happy": ["this is the best day of my life", "I am so glad you came", "we won, we actually won",
              "I love it, thank you so much", "that's wonderful news", "that was so much fun",
              "I'm so happy for both of you", "I'm delighted, everything went perfectly"],
    "sad": ["I miss her so much", "nobody came to say goodbye", "I lost my job today",
            "it's over, there's nothing left", "I feel so lonely these days", "he passed away last night",
            "I cried all night", "everything I loved is gone"],
    "worried": ["what if they don't come back in time?", "I'm afraid something bad will happen",
                "I'm not sure we can pay the rent", "are you sure it's safe?", "I keep thinking about the test results",
                "I'm nervous about tomorrow", "what if he finds out?", "I hope nothing went wrong"],
    "surprise": ["wow, I didn't expect that at all", "what? you're kidding me!", "no way, is that really you?",
                 "oh my god, when did this happen?", "really? I had no idea", "I can't believe my eyes",
                 "whoa, that came out of nowhere", "wait, you did all this?"],
}
FILLER_START = ["well,", "you know,", "so,", "listen,", "honestly,", "I mean,", "okay,", "look,", "um,"]
FILLER_SENT = ["I was just talking to my brother.", "It was after lunch.", "Anyway, that's what happened.",
               "We were in the kitchen.", "It's been a long week.", "I saw it on the way here.", "Right."]


def make_transcript(cue: int, rng: np.random.Generator) -> str:
    parts = [PHRASES[CLASSES[cue]][rng.integers(8)]]
    if rng.random() < P_MIXED_TEXT:  # ambiguous: a second class's phrase too
        other = CLASSES[(cue + 1 + rng.integers(5)) % 6]
        parts.insert(rng.integers(2), PHRASES[other][rng.integers(8)])
    s = " ".join(p[0].upper() + p[1:] + ("" if p[-1] in "?!." else ".") for p in parts)
    if rng.random() < 0.6:
        head = s if s.startswith(("I ", "I'")) else s[0].lower() + s[1:]
        s = f"{FILLER_START[rng.integers(len(FILLER_START))].capitalize()} {head}"
    if rng.random() < 0.4:
        s = f"{s} {FILLER_SENT[rng.integers(len(FILLER_SENT))]}"
    return s
