"""The client developer's guide in the README is the code this test runs (examples/), included
verbatim by readme_examples.py, so it cannot drift from what Firefox was shown to work with."""

import readme_examples


def test_readme_includes_every_example_verbatim():
    with open(readme_examples.README, encoding="utf-8") as f:
        text = f.read()
    assert readme_examples.problems(text) == []


def test_the_check_notices_a_stale_copy():
    marked = "".join(f"<!-- include {path} -->\n```js\nold\n```\n<!-- end include -->\n"
                     for path in readme_examples.example_files())
    fresh = readme_examples.filled(marked)
    assert readme_examples.problems(fresh) == []
    assert len(readme_examples.problems(marked)) == len(readme_examples.example_files())
    assert readme_examples.problems("no markers") != []
