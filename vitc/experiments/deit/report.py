"""The DeiT experiment's markdown table."""


def table_markdown(rows):
    head = "| run | model | params | distillation | test acc cls | dist | avg (default) | sum_softmax | train s |\n"
    head += "|---|---|---|---|---|---|---|---|---|\n"
    fmt = lambda v: "—" if v is None else f"{100 * v:.2f}"  # noqa: E731
    for r in rows:
        a = r["test_accuracy"]
        head += (f"| {r['run']} | {r['model']} | {r['params']:,} | {r['distillation']} | {fmt(a.get('cls'))} | "
                 f"{fmt(a.get('dist'))} | {fmt(a.get('avg'))} | {fmt(a.get('sum_softmax'))} | "
                 f"{r['train_time']:.0f} |\n")
    return head
