"""Regenerates the bundled example media. Everything here was made by this script, not taken from anyone.

Portraits are drawn with Pillow; speech is synthesised with espeak-ng (Debian package `espeak-ng`).
Run from the repository root: python examples/make_examples.py
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SPEECH = {
    "speech.wav": ("en-us", "150", "50", "Hello! I am a talking portrait made by talkgen. Give me a picture and a "
                   "voice, and I will move my lips to your words."),
    "speech_2.wav": ("en-gb", "160", "30", "And I am the second speaker. We can talk in turns, or at the same time."),
}


def draw_face(draw: ImageDraw.ImageDraw, cx: int, cy: int, scale: float, skin: tuple, hair: tuple) -> None:
    """A simple front-facing head: hair, face, eyes, brows, nose and a closed mouth."""
    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return (int(cx + x0 * scale), int(cy + y0 * scale), int(cx + x1 * scale), int(cy + y1 * scale))

    draw.ellipse(box(-110, -150, 110, 60), fill=hair)                       # hair behind the head
    draw.rectangle(box(-40, 90, 40, 170), fill=skin)                        # neck
    draw.ellipse(box(-150, 150, 150, 320), fill=(60, 80, 120))              # shoulders
    draw.ellipse(box(-90, -110, 90, 130), fill=skin)                        # face
    draw.chord(box(-95, -130, 95, 10), 180, 360, fill=hair)                 # fringe
    for side in (-1, 1):
        draw.ellipse(box(side * 38 - 16, -14, side * 38 + 16, 6), fill=(250, 250, 250))   # eye white
        draw.ellipse(box(side * 38 - 7, -11, side * 38 + 7, 3), fill=(60, 40, 30))         # iris
        draw.line(box(side * 38 - 20, -30, side * 38 + 20, -34), fill=hair, width=max(2, int(5 * scale)))
    draw.polygon([box(0, 0, 0, 0)[:2], box(-10, 45, 0, 0)[:2], box(10, 45, 0, 0)[:2]], fill=(200, 150, 130))
    draw.arc(box(-32, 55, 32, 90), 10, 170, fill=(150, 60, 60), width=max(2, int(5 * scale)))  # mouth


def portrait(path: Path, size: tuple[int, int], faces: list[tuple[float, tuple, tuple]]) -> None:
    width, height = size
    img = Image.new("RGB", size)
    pixels = img.load()
    for y in range(height):  # a soft vertical background gradient
        shade = (int(90 + 80 * y / height), int(120 + 60 * y / height), int(150 + 40 * y / height))
        for x in range(width):
            pixels[x, y] = shade
    draw = ImageDraw.Draw(img)
    for fx, skin, hair in faces:
        draw_face(draw, int(fx * width), int(height * 0.42), height / 512, skin, hair)
    img.filter(ImageFilter.SMOOTH).save(path, optimize=True)


def speech(path: Path, voice: str, speed: str, pitch: str, text: str) -> None:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed to regenerate the speech: apt-get install espeak-ng")
    subprocess.run(["espeak-ng", "-v", voice, "-s", speed, "-p", pitch, "-w", str(path), text], check=True)


def main() -> None:
    portrait(HERE / "portrait.png", (512, 512), [(0.5, (236, 196, 170), (70, 45, 30))])
    portrait(HERE / "two_people.png", (832, 480),
             [(0.27, (236, 196, 170), (70, 45, 30)), (0.73, (190, 140, 110), (25, 25, 25))])
    for name, args in SPEECH.items():
        speech(HERE / name, *args)
    print("wrote", ", ".join(sorted(p.name for p in HERE.iterdir() if p.suffix in (".png", ".wav"))))


if __name__ == "__main__":
    main()
