"""flipgate.mitigation.soup: new and k - 1 members trained from old, averaged (tiny BERTs, one epoch)."""

from dataclasses import replace

import torch

from flipgate.models.classifier import load_classifier, save_classifier
from flipgate.models.device import set_seed
from flipgate.models.run import dev_accuracy_hook
from flipgate.models.train import TrainConfig, train_classifier
from flipgate.mitigation.soup import train_soup

from conftest import toy_frame

CPU = torch.device("cpu")
LABELS = ["0", "1"]
CFG = TrainConfig(epochs=1, lr=2e-3, batch_size=16, seed=5, max_length=32)


def saved(tiny_bert, folder, seed: int):
    set_seed(seed)
    model, tok = load_classifier(str(tiny_bert), LABELS)
    save_classifier(model, tok, folder, {"role": folder.name})
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_soup_of_two_is_the_mean_of_new_and_a_member_trained_from_old_with_the_next_seed(tiny_bert, tmp_path):
    saved(tiny_bert, tmp_path / "old", 0)
    new_sd = saved(tiny_bert, tmp_path / "new", 1)
    train, dev = toy_frame(64, 0), toy_frame(16, 1, prefix="d")

    alone, _ = train_soup(tmp_path / "old", tmp_path / "new", LABELS, train, dev, CFG, 1, CPU, 16)
    for k, v in alone.state_dict().items():
        assert torch.equal(v, new_sd[k]), k  # k = 1: new itself

    soup, _ = train_soup(tmp_path / "old", tmp_path / "new", LABELS, train, dev, CFG, 2, CPU, 16)
    set_seed(6)  # the member: seed 5 + 1, from old, with the fine-tuned start's rule
    member, tok = load_classifier(str(tmp_path / "old"), LABELS)
    hook = dev_accuracy_hook(member, tok, dev, CPU, 16, 32)
    train_classifier(member, tok, train["text"].tolist(), train["label"].to_numpy(),
                     replace(CFG, seed=6, from_fine_tuned=True), CPU, hook)
    member_sd = member.state_dict()
    for k, v in soup.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (new_sd[k] + member_sd[k]) / 2, msg=k)
        else:  # integer buffers (position ids) are new's
            assert torch.equal(v, new_sd[k]), k
