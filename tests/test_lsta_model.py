import pytest
import torch
import torch.nn.functional as F

from inference.backends.torch_backend import _channels_last
from networks.lsta import LSTA
from networks.sta import STA
from tests.conftest import fixture
from tests.helpers.builders import small_cfg
from utils.checkpoint import read_checkpoint


def _listing(path):
    rows = [line.split() for line in open(path) if line.strip() and not line.startswith("#")]
    return [(name, shape) for name, shape, *_ in rows]


def test_state_dict_equals_the_authors_listing():
    model = LSTA()
    ours = [(k, "x".join(map(str, v.shape)) or "scalar") for k, v in model.state_dict().items()]
    assert ours == _listing(fixture("lsta_state_dict.txt"))
    assert all(v.dtype == torch.float32 for k, v in model.state_dict().items() if "num_batches" not in k)
    assert not model.LTM.w.requires_grad


def test_golden_head_logits():
    golden = read_checkpoint(fixture("lsta_head_golden.pt"), "golden head outputs")
    model = LSTA.from_config(small_cfg()).eval()
    result = model.load_state_dict(golden["head_state_dict"], strict=False)
    assert result.unexpected_keys == []
    assert all(k.startswith("feature_extractor.") for k in result.missing_keys)
    feats = golden["feats"]
    with torch.no_grad():
        caches = model.cache_frames(torch.cat(feats)).split()
        for i, expected in enumerate(golden["logits"]):
            others = feats[:i] + feats[i + 1:]
            direct = model.segment(feats[i], others[:-1], others[-1])
            cached_others = caches[:i] + caches[i + 1:]
            cached = model.segment_cached(caches[i], cached_others[:-1], cached_others[-1])
            # TEST_CHANNELS_LAST's head computes the same logits in the other memory layout.
            channels_last = model.segment_cached(caches[i], cached_others[:-1], cached_others[-1],
                                                 _channels_last(model.head))
            scale = expected.abs().max()
            assert (direct - expected).abs().max() / scale <= 1e-4, i
            assert (cached - expected).abs().max() / scale <= 1e-4, i
            assert (channels_last - expected).abs().max() / scale <= 1e-4, i


@pytest.mark.parametrize("height,width", [(25, 41), (28, 36), (9, 13)])
def test_sta_folds_by_summation_and_leaves_uncovered_pixels_zero(height, width):
    torch.manual_seed(0)
    sta = STA(16)
    q = torch.randn(2, 16, height, width, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 16, height, width, dtype=torch.float64, requires_grad=True)
    out = sta(q, k)
    # Rows and columns past the last patch (25 = 8 + 4*4 + 1: the last one) belong to no patch.
    covered_h, covered_w = (height - 8) // 4 * 4 + 8, (width - 8) // 4 * 4 + 8
    assert (out[..., covered_h:, :] == 0).all() and (out[..., covered_w:] == 0).all()
    # Reference: per-patch attention summed back by hand.
    expected = torch.zeros_like(q)
    for y in range(0, height - 8 + 1, 4):
        for x in range(0, width - 8 + 1, 4):
            qp = q[:, :, y:y + 8, x:x + 8].reshape(2, 16, 64).transpose(1, 2)
            kp = k[:, :, y:y + 8, x:x + 8].reshape(2, 16, 64).transpose(1, 2)
            att = F.softmax(qp @ kp.transpose(1, 2) / 4, dim=-1) @ kp
            expected[:, :, y:y + 8, x:x + 8] += att.transpose(1, 2).reshape(2, 16, 8, 8)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    # Training back-propagates through it: the gradients equal the reference's too.
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), (q, k))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (q, k))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10)


def test_ltm_equals_direct_linear_attention():
    torch.manual_seed(0)
    model = LSTA.from_config(small_cfg())
    q = torch.randn(2, 16, 6, 7)
    keys = [torch.randn(2, 16, 6, 7) for _ in range(3)]
    out = model.LTM(q, keys)
    # Direct (non-cached) form over the concatenated memory.
    w = model.LTM.w
    phi = lambda x: torch.exp(x @ w.T - (x * x).sum(-1, keepdim=True) / 2) / 8 ** 0.5  # noqa: E731
    qf = q.flatten(2).transpose(1, 2)
    kf = torch.cat([k.flatten(2).transpose(1, 2) for k in keys], dim=1)
    qp, kp = phi(qf), phi(kf)
    y = (qp @ (kp.transpose(1, 2) @ kf)) / (qp @ kp.sum(1, keepdim=True).transpose(1, 2) + 1e-8)
    ref = F.layer_norm(torch.cat([y.transpose(1, 2).reshape(2, 16, 6, 7), q], 1), (6, 7))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_shapes_and_training_forward_with_small_backbone():
    torch.manual_seed(0)
    model = LSTA.from_config(small_cfg(MODEL_TRAIN_ENCODER=True))
    feats = model.encode(torch.randn(2, 3, 65, 97))
    assert feats.shape == (2, 256, 17, 25)
    images = [torch.randn(2, 3, 65, 97) for _ in range(5)]
    outputs = model(images[0], images[1], images[2:])
    assert len(outputs) == 3 and all(o.shape == (2, 2, 65, 97) for o in outputs)
    sum(o.mean() for o in outputs).backward()
    assert model.feature_extractor.backbone.conv1.weight.grad is not None
    assert model.refine[1].num_batches_tracked.item() == 3  # one BN pass per current frame


def test_frozen_encoder_gets_no_gradient():
    model = LSTA.from_config(small_cfg())
    images = [torch.randn(1, 3, 65, 65) for _ in range(3)]
    model(images[0], images[1], images[2:])[0].sum().backward()
    assert model.feature_extractor.backbone.conv1.weight.grad is None
    assert model.pred.weight.grad is not None


def test_training_forward_equals_segment_with_sliding_memory():
    torch.manual_seed(0)
    model = LSTA.from_config(small_cfg()).eval()
    images = [torch.randn(1, 3, 49, 49) for _ in range(4)]
    with torch.no_grad():
        outputs = model(images[0], images[1], images[2:])
        feats = [model.encode(im) for im in images]
        for i, out in enumerate(outputs):
            logits = model.segment(feats[i + 2], [feats[i], feats[i + 1]], feats[i + 1])
            up = F.interpolate(logits, size=(49, 49), mode="bilinear", align_corners=True)
            torch.testing.assert_close(out, up)


def test_resnet101_shapes_at_davis_eval_size():
    torch.manual_seed(0)
    model = LSTA().eval()
    with torch.inference_mode():
        features = model.encode(torch.randn(1, 3, 481, 849))
        assert features.shape == (1, 256, 121, 213)
        memory = [features + 0.1 * i for i in range(10)]
        logits = model.segment(features, memory[:-1], memory[-1])
    assert logits.shape == (1, 2, 121, 213) and torch.isfinite(logits).all()


def test_stm_state_dict_and_interface():
    from networks.stm import STM
    teacher = STM().eval()
    ours = [(k, "x".join(map(str, v.shape)) or "scalar") for k, v in teacher.state_dict().items()]
    assert ours == _listing(fixture("stm_state_dict.txt"))
    frame = torch.rand(1, 3, 70, 90)
    masks = torch.zeros(1, 3, 70, 90)
    masks[0, 1, 10:40, 20:50] = 1
    masks[0, 2, 40:60, 50:80] = 1
    masks[0, 0] = 1 - masks[0, 1:].sum(0)
    with torch.no_grad():
        keys, values = teacher(frame, masks, torch.tensor([2]))   # memorize (official dispatch)
        assert keys.shape == (1, 3, 128, 1, 5, 6) and values.shape == (1, 3, 512, 1, 5, 6)
        assert keys[0, 0].abs().max() == 0  # slot 0 (background) stays empty
        logits = teacher(frame, keys, values, torch.tensor([2]))  # segment
    assert logits.shape == (1, 3, 70, 90)
    probs = torch.sigmoid(logits)  # log(p / (1 - p)) of the soft aggregation
    assert probs.min() >= 1e-7 - 1e-9 and probs.max() <= 1 - 1e-7 + 1e-6
