"""The shared figure builders: live plot of any keys, grouped bars, the error message."""
import pytest

from course_utils import plots


def test_live_plot_draws_every_recorded_key_and_skips_missing_ones():
    live = plots.LivePlot({"acc": "accuracy", "loss": "loss"}, title="t")
    live.update({"step": 0, "acc": 0.1})
    live.update({"step": 10, "acc": 0.5, "loss": 2.0})
    acc, loss = live.widget.data
    assert list(acc.x) == [0, 10] and list(acc.y) == [0.1, 0.5]
    assert list(loss.x) == [10] and list(loss.y) == [2.0]
    assert live.widget.layout.title.text == "t"


def test_live_loss_plot_is_a_live_plot_of_both_losses():
    live = plots.LiveLossPlot(reference=4.4)
    live.update({"step": 0, "train_loss": 4.4, "val_loss": 4.5})
    assert [t.name for t in live.widget.data] == ["train", "validation"]
    assert list(live.widget.data[1].y) == [4.5]


def test_grouped_bars_and_error_html():
    fig = plots.grouped_bars({"a": {"x": 1, "y": 2}, "b": {"x": 3, "y": 4}}, title="g")
    assert fig.layout.barmode == "group" and [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[1].y) == [3, 4] and fig.data[0].marker.color == plots.PALETTE[0]
    msg = plots.error_html("value <3> is out of range")
    assert plots.ERROR_COLOR in msg and "&lt;3&gt;" in msg


def test_heatmap_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="does not match"):
        plots.heatmap([[1, 2]], ["a"], ["b"])


def test_heatmap_token_labels_show_whitespace_plain_labels_do_not():
    tokens = plots.heatmap([[1.0, 2.0]], ["a b", "\n"], ["row 0"])
    assert list(tokens.layout.xaxis.ticktext) == ["a␣b", "⏎"]
    plain = plots.heatmap([[1.0, 2.0]], ["head 0", "head 1"], ["layer 0"], token_labels=False)
    assert list(plain.layout.xaxis.ticktext) == ["head 0", "head 1"]
    assert list(plain.layout.yaxis.ticktext) == ["layer 0"]
