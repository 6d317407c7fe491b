"""Synthetic English voices (espeak-ng, flite) and robust synthesis to 16 kHz wav files.

The built-in corpus (local/prepare_builtin.py) speaks sentences with the voices of
:data:`VOICES`. Each output goes through sox to 16 kHz mono 16-bit and is checked (readable,
not empty, not silent) before it is renamed into place, so a wav that exists is a good one and
a rerun reuses it. Synthesis runs ``num_jobs`` child processes at a time with a progress bar.

The engines hide two problems that :func:`probe_voices` catches up front: for a voice name
they do not know, espeak-ng and flite fall back to their default voice and still exit with
status 0, and espeak-ng ignores a variant on "en-gb" ("en-gb+f2" sounds exactly like "en-gb").
"""

import hashlib
import os
import random
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

SAMPLE_RATE = 16000
MIN_SAMPLES = SAMPLE_RATE // 10  # shorter than 0.1 s counts as empty
SILENCE_PEAK = 1e-3  # peak |amplitude| (full scale 1.0) below which audio counts as silent
PROBE_TEXT = "The heavy rain fell on the town."


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: a TTS engine, its voice name and prosody settings.

    ``speed`` is the speaking rate relative to the engine's default (espeak-ng: 175 words per
    minute times speed; flite: duration_stretch = 1/speed). ``pitch`` is espeak-ng's pitch
    (0-99, default 50) or flite's target mean F0 in Hz; None keeps the engine default.
    """

    engine: str  # "espeak-ng" or "flite"
    name: str  # espeak-ng "voice[+variant]" or flite voice name
    speed: float = 1.0
    pitch: int | None = None
    held_out: bool = False  # only in the test split

    @property
    def id(self) -> str:
        engine = "espeak" if self.engine == "espeak-ng" else self.engine
        tag = f"{engine}-{self.name}"
        if self.speed != 1.0:
            tag += f"-r{self.speed:g}"
        if self.pitch is not None:
            tag += f"-p{self.pitch}"
        return tag

    def command(self, text: str, wav: Path) -> list[str]:
        """The command line that speaks ``text`` into ``wav`` (engine's own sample rate)."""
        if self.engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", self.name, "-s", str(round(175 * self.speed)), "-w", str(wav)]
            if self.pitch is not None:
                cmd += ["-p", str(self.pitch)]
            return cmd + [text]
        if self.engine == "flite":
            cmd = ["flite", "-voice", self.name, "--setf", f"duration_stretch={1 / self.speed:.3g}"]
            if self.pitch is not None:
                cmd += ["--setf", f"int_f0_target_mean={self.pitch}"]
            return cmd + ["-t", text, "-o", str(wav)]
        raise ValueError(f"unknown TTS engine {self.engine!r} for voice {self.name!r}")


# Note: espeak-ng silently ignores a variant on "en-gb" ("en-gb+f2" == "en-gb"), so variants are
# put on "en", "en-us" and the other accents. mbrola and festival voices are left out (non-free,
# respectively 20x slower); flite's "kal" is 8 kHz and "awb_time" a talking clock.
VOICES: tuple[Voice, ...] = (
    # espeak-ng accents
    Voice("espeak-ng", "en-us"),
    Voice("espeak-ng", "en"),  # British (gmw/en)
    Voice("espeak-ng", "en-gb-scotland"),
    Voice("espeak-ng", "en-gb-x-rp"),
    Voice("espeak-ng", "en-gb-x-gbclan"),
    Voice("espeak-ng", "en-029"),
    Voice("espeak-ng", "en-us-nyc"),
    # espeak-ng variants (female f*, male m*, klatt synthesiser)
    Voice("espeak-ng", "en+f2"),
    Voice("espeak-ng", "en-us+f3"),
    Voice("espeak-ng", "en-gb-x-rp+m3"),
    Voice("espeak-ng", "en-029+f1"),
    Voice("espeak-ng", "en+m7"),
    Voice("espeak-ng", "en-us+klatt2"),
    Voice("espeak-ng", "en-gb-x-gbclan+m4"),
    # espeak-ng prosody settings
    Voice("espeak-ng", "en-us", speed=0.8, pitch=30),
    Voice("espeak-ng", "en+f4", speed=1.15, pitch=70),
    # flite
    Voice("flite", "kal16"),
    Voice("flite", "rms"),
    Voice("flite", "slt"),
    Voice("flite", "slt", speed=0.85, pitch=200),
    # held out from training: an unseen accent, an unseen accent+variant, an unseen prosody
    # setting of a variant, and an unseen flite voice (Scottish clustergen).
    Voice("espeak-ng", "en-gb-x-gbcwmd", held_out=True),
    Voice("espeak-ng", "en-gb-scotland+f4", held_out=True),
    Voice("espeak-ng", "en-us-nyc+m2", speed=0.9, pitch=60, held_out=True),
    Voice("flite", "awb", held_out=True),
)

# espeak-ng variants that make another speaker of an accent (pitch range, formants, breathiness,
# the klatt synthesisers): the robot, whisper, croak and novelty variants are left out, and so
# are "Mr", "caleb" and "klatt6", which sound exactly like the plain voice or "klatt" here.
ESPEAK_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "adam", "Alex", "Alicia", "Andrea", "Andy",
    "Annie", "aunty", "belinda", "benjamin", "boris", "david", "Denis", "ed", "edward", "edward2",
    "Gene", "Gene2", "gustave", "iven", "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta",
    "Lee", "linda", "max", "Michael", "michel", "Mike", "norbert", "pablo", "paul", "quincy", "rob",
    "robert", "shelby", "steph", "steph2", "steph3", "Storm", "travis", "victor", "zac", "anika",
    "grandma", "grandpa",
)
# Median F0 (Hz) of the flite voices' own speech, measured: the centre of their pitch draws.
FLITE_MEAN_F0 = {"kal16": 90, "rms": 100, "slt": 170, "awb": 130}


def vary_voice(voice: Voice, rng: random.Random) -> Voice:
    """A new speaker drawn around ``voice``: a random speaking rate (0.8-1.25x) and pitch, and for
    espeak-ng a random variant of the same accent (``"en-us+f3"`` -> ``"en-us+klatt4"``).

    Training on many such speakers instead of a few fixed ones is what lets a model hear voices
    it was not trained on (the held-out test voices): 20 base voices become thousands.
    """
    speed = round(rng.uniform(0.8, 1.25), 2)
    if voice.engine == "espeak-ng":
        accent = voice.name.split("+")[0]
        return Voice("espeak-ng", f"{accent}+{rng.choice(ESPEAK_VARIANTS)}", speed, rng.randint(20, 80))
    return Voice(voice.engine, voice.name, speed, round(FLITE_MEAN_F0[voice.name] * rng.uniform(0.8, 1.25)))


def check_wav(path: Path) -> str | None:
    """None when ``path`` is a usable 16 kHz mono 16-bit, non-empty, non-silent wav; else why not."""
    try:
        info = sf.info(str(path))
        if (info.samplerate, info.channels, info.subtype) != (SAMPLE_RATE, 1, "PCM_16"):
            return f"wrong format ({info.samplerate} Hz, {info.channels} ch, {info.subtype})"
        if info.frames < MIN_SAMPLES:
            return f"empty audio ({info.frames} samples)"
        peak = float(np.abs(sf.read(str(path), dtype="float32")[0]).max())
    except (RuntimeError, OSError) as e:  # soundfile.LibsndfileError is a RuntimeError
        return f"unreadable audio ({e})"
    return f"silent audio (peak {peak:.1e})" if peak < SILENCE_PEAK else None


def synthesize(voice: Voice, text: str, wav_path: Path) -> str | None:
    """Make ``wav_path`` (``voice`` saying ``text``) unless a good one exists.

    Returns None on success, else why it failed.

    Synthesis and resampling happen in a temporary directory beside the target; only a
    checked result is renamed into place, so an interruption never leaves a bad wav behind.
    """
    if wav_path.is_file() and check_wav(wav_path) is None:
        return None
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wav_path.parent, prefix=".tmp-") as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        resample = ["sox", "-R", "-D", "-V1", str(raw), "-r", str(SAMPLE_RATE), "-c", "1"]
        for cmd in (voice.command(text, raw), resample + ["-b", "16", str(out)]):
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=120)
            except subprocess.CalledProcessError as e:
                return f"{cmd[0]} failed ({e.returncode}): {e.stderr.decode(errors='replace').strip()}"
            except subprocess.TimeoutExpired:
                return f"{cmd[0]} timed out"
            except OSError as e:  # program missing or not executable
                return f"{cmd[0]} could not run: {e}"
        problem = check_wav(out)
        if problem is None:
            os.replace(out, wav_path)
        return problem


def synthesize_many(
    jobs: dict[str, tuple[Voice, str, Path]], num_jobs: int, desc: str = "Synthesising"
) -> dict[str, str]:
    """Run :func:`synthesize` for ``{id: (voice, text, wav_path)}``, ``num_jobs`` at a time.

    Returns ``{id: reason}`` for the failures. Threads suffice: the work happens in the
    espeak-ng/flite/sox child processes.
    """
    for folder in {path.parent for _, _, path in jobs.values()}:
        for stale in folder.glob(".tmp-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
    failed = {}
    pool = ThreadPoolExecutor(max_workers=num_jobs)
    try:
        futures = {pool.submit(synthesize, *job): key for key, job in jobs.items()}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="utt"):
            problem = future.result()
            if problem is not None:
                failed[futures[future]] = problem
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failed


def probe_voices(voices: tuple[Voice, ...], num_jobs: int) -> None:
    """Fail early when a voice is unusable or silently replaced by another voice.

    Speaks one phrase with every voice (about a second) and raises RuntimeError when one
    fails or when two voices produce identical audio.
    """
    with tempfile.TemporaryDirectory() as tmp:
        jobs = {v.id: (v, PROBE_TEXT, Path(tmp) / f"{i}.wav") for i, v in enumerate(voices)}
        failed = synthesize_many(jobs, num_jobs, desc="Checking voices")
        if failed:
            raise RuntimeError(f"voices that cannot speak: {failed}")
        first_with: dict[str, str] = {}
        for voice_id, (_, _, wav) in jobs.items():
            digest = hashlib.sha1(sf.read(wav)[0].tobytes()).hexdigest()
            if digest in first_with:
                raise RuntimeError(
                    f"voices {first_with[digest]} and {voice_id} produce identical audio: the "
                    "engine does not know one of them (or ignores its variant); fix VOICES"
                )
            first_with[digest] = voice_id
