"""Turntables: one frame per camera, each cell the exact pixels of its view (or grey where no render exists)."""

import numpy as np
import pytest
from PIL import Image, ImageSequence

from reports.animation import PLACEHOLDER, TurntableRow, mp4_available, turntable_frames, write_turntable
from scenes.errors import InvalidInputError

CAMERAS = [f"{i:06d}" for i in range(6)]


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    truth = {c: rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for c in CAMERAS}
    generated = {c: rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for c in CAMERAS}
    renders = {c: rng.random((12, 12, 3)) for c in CAMERAS[::3]}  # float renders at the held-out cameras
    return [TurntableRow("ground_truth", truth), TurntableRow("xunet/stochastic", generated, renders)]


def _cell(frame, layout, row, column):
    x, y = layout.cell_origin(row, column)
    return frame[y:y + layout.cell_height:2, x:x + layout.cell_width:2]  # undo the 2x enlargement


def test_frames_hold_each_view_in_orbit_order(rows):
    frames, layout_rows = turntable_frames(rows, CAMERAS, scale=2)
    assert len(frames) == len(CAMERAS)
    for camera, frame in zip(CAMERAS, frames):
        np.testing.assert_array_equal(_cell(frame, layout_rows, 0, 0), rows[0].views[camera])
        np.testing.assert_array_equal(_cell(frame, layout_rows, 1, 0), rows[1].views[camera])
        render = _cell(frame, layout_rows, 1, 1)
        if camera in rows[1].renders:
            expected = np.round(rows[1].renders[camera] * 255).astype(np.uint8)
            np.testing.assert_array_equal(render, expected)
        else:
            assert (render == PLACEHOLDER).all()


def gif_frames(path):
    with Image.open(path) as gif:
        assert gif.info["loop"] == 0 and gif.info["duration"] == 100
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]


def test_gif_and_an_mp4_only_where_an_encoder_is_installed(rows, tmp_path):
    written = write_turntable(rows, CAMERAS, tmp_path / "turntable", frame_ms=100)
    frames = gif_frames(written["gif"])
    assert len(frames) == len(CAMERAS)
    assert not np.array_equal(frames[0], frames[1])
    assert ("mp4" in written) == (mp4_available() is not None)


@pytest.mark.skipif(mp4_available() is None, reason="no MP4 encoder installed (PyAV with libx264/mpeg4)")
def test_mp4_frames_follow_the_gifs(rows, tmp_path):
    written = write_turntable(rows, CAMERAS, tmp_path / "turntable", frame_ms=100)
    frames = gif_frames(written["gif"])
    import av

    with av.open(str(written["mp4"])) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == len(CAMERAS)
    # Lossy, but each decoded frame is closest to its own source frame.
    for i, frame in enumerate(decoded):
        errors = [np.abs(frame[:f.shape[0], :f.shape[1]].astype(float) - f).mean() for f in frames]
        assert int(np.argmin(errors)) == i


def test_bad_input(rows, tmp_path):
    with pytest.raises(InvalidInputError, match="no rows"):
        turntable_frames([], CAMERAS)
    rows[1].views[CAMERAS[0]] = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InvalidInputError, match="shapes"):
        write_turntable(rows, CAMERAS, tmp_path / "t")
    assert not list(tmp_path.iterdir())
