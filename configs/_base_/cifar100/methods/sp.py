# SP: Tung & Mori, ICCV 2019. Similarity of the last stage's maps; -r 1 -a 0 -b 3000.
distill = [dict(type='SP', student='feats[-2]', teacher='feats[-2]', weight=3000)]
