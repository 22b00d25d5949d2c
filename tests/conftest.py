import pytest
import torch


@pytest.fixture(scope="session")
def demo():
    from cnnviz_widgets.demo import load_demo

    return load_demo(split="test")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
