"""The re-run table as the pages show it (rnnbook.experiments.reruns.styled)."""
import pandas as pd

from rnnbook.experiments import reruns


def test_styled_table_prints_seconds_to_one_decimal_and_accuracies_to_four():
    frame = pd.DataFrame({"configuration": ["tanh + orthogonal"], "largest difference": [0.00012],
                          "seconds": [7.1]})
    html = reruns.styled(frame).to_html()
    assert ">7.1<" in html and "7.1000" not in html
    assert "0.0001" in html


def test_styled_table_keeps_the_no_shipped_run_row():
    frame = pd.DataFrame([{"configuration": "none: this build read no shipped reference run",
                           "largest difference": "n/a", "seconds": "n/a"}])
    html = reruns.styled(frame).to_html()
    assert "n/a" in html and "none: this build read no shipped reference run" in html
