"""A short text written for this project: the demo dataset of the tiny language model.

It ships as a Python string so that it needs no package-data entry and no download.
"""

from __future__ import annotations

TINY_TEXT = """\
The night shift at the render farm begins when the last office light goes out.
A thousand cards wake up in bedrooms, basements and small data rooms, and each one
asks the same question: is there work for me? The coordinator answers with a frame,
a batch of sentences, or a segment of training steps, and the card goes quiet again
while the fans spin up.

A provider is paid for work that was checked. Some frames are rendered twice by two
strangers, and the pixels must agree. Some batches of embeddings are computed again
on another machine, and the vectors must point the same way. A training run leaves a
trail of hashes behind it, one every few dozen steps, so that anyone can pick up a
checkpoint, replay the steps that follow, and see whether the same hash comes out.

The buyer does not need to trust the provider, and the provider does not need to
trust the buyer. Money waits in escrow until the result is accepted. If a result is
wrong, the stake of the provider pays for the mistake, and the work is done again
elsewhere. Honest cards earn a little more each week; dishonest cards are found out
and leave.

In the morning the office lights come back on. The cards cool down. The ledger shows
every token that moved during the night: deposits, fees, payouts and the small
amounts that were burned. The sum of all accounts is what was deposited minus what
was withdrawn, to the last unit, as it was the night before and will be tomorrow.

A small model trained on this text learns which letter tends to follow which. It
learns that a space comes after a word, that a capital letter comes after a full
stop, and that the word card is often near the word provider. It will not learn much
more than that, and it does not need to: its task is to show that the same steps,
on the same kind of machine, give the same weights, every time.
"""
